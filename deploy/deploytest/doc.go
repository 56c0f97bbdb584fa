// Package deploytest checks the deployment files against each other and against the code:
// template.yaml (AWS SAM, parsed with goformation), the Makefile targets that `sam build`
// calls, cloudbuild.yaml and the Cloud Run Dockerfile (parsed with yaml.v3 and by line),
// the sample events and the deployment READMEs. It has no code of its own: see its tests.
package deploytest
