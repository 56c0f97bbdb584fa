// Package browsertest holds the web dashboard's tests in a real headless browser: Debian's
// chromium, driven from Go with chromedp, against a real orchestrator on a fresh database
// and a worker written with the Go worker SDK. The tests trigger a pipeline from the page
// and watch its nodes finish, open a failed task's attempts, retry it from the dead letter
// queue page, and go through the API key prompt. They save a PNG screenshot of each page in
// $PIPEWEAVE_ARTIFACTS_DIR, or .pipeweave/artifacts/screenshots under the repository root.
// Chromium must be installed: scripts/ensure-chromium installs it. The package has only tests.
package browsertest
