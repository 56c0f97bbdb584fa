package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	_ "github.com/pipeweave/pipeweave/core/storage/drivers" // the tests run every provider
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/examples/pdf"
	"github.com/pipeweave/pipeweave/internal/fakegcs"
	"github.com/pipeweave/pipeweave/internal/fakes3"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/internal/testutil"
	"github.com/pipeweave/pipeweave/worker"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// secretKey is PIPEWEAVE_SECRET_KEY of the orchestrator and the worker.
const secretKey = testorch.Secret

// bucket is the bucket of every cloud backend.
const bucket = "pipeweave-e2e"

// The ids of the four backends every orchestrator of these tests is
// configured with; one of them is the default.
const (
	idLocal = "local"
	idS3    = "aws-s3"
	idMinIO = "minio"
	idGCS   = "gcs"
)

// backendIDs lists the backends in the order of the subtests.
var backendIDs = []string{idLocal, idS3, idMinIO, idGCS}

// Credentials of the S3-protocol fakes, distinct so that a leak of any of
// them is found.
var (
	awsOptions = fakes3.Options{
		AccessKey:    "AKIAE2EAWSACCESSKEY7",
		SecretKey:    "e2e-aws-secret-access-key-Zq8vN3pT",
		SessionToken: "e2e-aws-session-token-Lm5xR1kQ",
		Region:       "eu-west-3",
	}
	minioOptions = fakes3.Options{
		AccessKey: "e2e-minio-access-key-Hs2Jd",
		SecretKey: "e2e-minio-secret-key-Wd9Fy4Cb",
		Region:    "us-east-1",
	}
)

// backends are the four storage backends of one orchestrator, each on its own
// fake server or directory.
type backends struct {
	localDir   string
	aws, minio *fakes3.Server
	gcs        *fakegcs.Server
	configs    map[string]storage.Config
}

// startBackends starts the fakes and creates the bucket on each.
func startBackends(t *testing.T) *backends {
	t.Helper()
	b := &backends{localDir: t.TempDir()}
	b.aws = fakes3.Start(t, awsOptions)
	b.aws.CreateBucket(t, bucket)
	b.minio = fakes3.Start(t, minioOptions)
	b.minio.CreateBucket(t, bucket)
	b.gcs = fakegcs.Start(t)
	b.gcs.CreateBucket(t, bucket)
	b.configs = map[string]storage.Config{
		idLocal: {ID: idLocal, Provider: storage.ProviderLocal, Credentials: map[string]any{"basePath": b.localDir}},
		idS3: {ID: idS3, Provider: storage.ProviderAWSS3, Endpoint: b.aws.URL, Bucket: bucket, Region: b.aws.Region,
			Credentials: map[string]any{"accessKeyId": b.aws.AccessKey, "secretAccessKey": b.aws.SecretKey, "sessionToken": b.aws.SessionToken}},
		idMinIO: {ID: idMinIO, Provider: storage.ProviderMinIO, Endpoint: b.minio.URL, Bucket: bucket, Region: b.minio.Region,
			Credentials: map[string]any{"accessKey": b.minio.AccessKey, "secretKey": b.minio.SecretKey}},
		idGCS: b.gcs.Config(idGCS, bucket),
	}
	return b
}

// secret is a credential value that must not leave the orchestrator but
// sealed in a run token.
type secret struct {
	name, value string
}

// secrets returns the credential values of every backend. The local
// backend's base path is not a secret as such, but it is a credential value
// all the same and has no business in an answer either.
func (b *backends) secrets() []secret {
	var out []secret
	for _, id := range backendIDs {
		for k, v := range b.configs[id].Credentials {
			s, ok := v.(string)
			if !ok || k == "projectId" || k == "tokenUri" {
				continue // not secret
			}
			out = append(out, secret{id + " credentials." + k, s})
		}
	}
	// A PEM key may show up re-wrapped or escaped: each line of its body
	// counts on its own. So does the access token its exchange yields.
	lines := strings.Split(strings.TrimSpace(b.gcs.PrivateKey), "\n")
	for _, line := range lines[1 : len(lines)-1] {
		out = append(out, secret{"gcs private key line", line})
	}
	out = append(out, secret{"gcs access token", fakegcs.AccessToken})
	return out
}

// stack is an orchestrator whose default backend is one of its backends and
// the example PDF worker, both served over HTTP on loopback.
type stack struct {
	backends *backends
	// def is the default backend's configuration.
	def  storage.Config
	url  string
	keys token.Keys
	// inline says small inputs and outputs are kept in PostgreSQL (INLINE_PAYLOAD_MAX_BYTES),
	// not in the default backend.
	inline bool

	tap        *tapListener
	orchLogs   *testutil.SyncBuffer
	workerLogs *testutil.SyncBuffer
	stopWorker func()

	mu      sync.Mutex
	answers []answer // every answer of the orchestrator the test received
}

// answer is one answer of the orchestrator to the test.
type answer struct {
	request string // "METHOD path"
	status  int
	body    []byte
}

// startStack starts the backends, an orchestrator (serverless mode, on a
// fresh database) whose default backend is defaultID and the PDF worker, and
// waits until the worker has registered; mod changes the orchestrator's
// configuration.
func startStack(t *testing.T, defaultID string, mod ...func(*core.Config)) *stack {
	t.Helper()
	b := startBackends(t)
	def, ok := b.configs[defaultID]
	require.True(t, ok, "no backend %q", defaultID)
	def.IsDefault = true
	var cfgs []storage.Config
	for _, id := range backendIDs {
		cfg := b.configs[id]
		if id == defaultID {
			cfg = def
		}
		cfgs = append(cfgs, cfg)
	}
	keys, err := token.DeriveKeys(secretKey)
	require.NoError(t, err)
	orch := testorch.Start(t, testorch.Options{Configure: func(cfg *core.Config) {
		cfg.StorageBackends = cfgs
		for _, m := range mod {
			m(cfg)
		}
	}})
	s := &stack{backends: b, def: def, keys: keys, url: orch.URL, orchLogs: orch.Logs, workerLogs: &testutil.SyncBuffer{},
		inline: orch.Config.InlinePayloadMaxBytes > 0}

	workerLog := slog.New(slog.NewJSONHandler(s.workerLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := worker.New(worker.Config{OrchestratorURL: orch.URL, ServiceID: pdf.ServiceID, Version: "1.0.0",
		ServiceKey: testorch.ServiceKey(t, secretKey, pdf.ServiceID), TempDir: t.TempDir(), Logger: workerLog, Pipelines: pdf.Pipelines()})
	require.NoError(t, err)
	require.NoError(t, pdf.Register(w))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.tap = &tapListener{Listener: ln}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- w.Serve(ctx, s.tap) }()
	var once sync.Once
	s.stopWorker = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-served)
		})
	}
	t.Cleanup(s.stopWorker)

	// Serve registers the worker; the pipeline exists once it has.
	require.Eventually(t, func() bool {
		resp, err := http.Get(orch.URL + "/api/pipelines/" + pdf.ServiceID)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 10*time.Millisecond, "the worker did not register")
	return s
}

// do sends a request to the orchestrator, records the answer and returns it.
func (s *stack) do(t *testing.T, method, path string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.url+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{request: method + " " + path, status: resp.StatusCode, body: raw}
	s.mu.Lock()
	s.answers = append(s.answers, a)
	s.mu.Unlock()
	return a
}

// getJSON GETs path, requires a 200 and decodes the answer into v.
func (s *stack) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	a := s.do(t, http.MethodGet, path, nil)
	require.Equal(t, http.StatusOK, a.status, "GET %s: %s", path, a.body)
	require.NoError(t, json.Unmarshal(a.body, v), "GET %s: %s", path, a.body)
}

// recordedAnswers returns the answers received so far.
func (s *stack) recordedAnswers() []answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.answers)
}

// pipelineRun is GET /api/runs/{id}.
type pipelineRun struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	InputPath string    `json:"inputPath"`
	Error     *string   `json:"error"`
	Tasks     []taskRun `json:"tasks"`
}

// taskRun is a task run of a pipeline run.
type taskRun struct {
	ID         string                    `json:"id"`
	TaskID     string                    `json:"taskId"`
	Status     string                    `json:"status"`
	Error      *string                   `json:"error"`
	OutputPath *string                   `json:"outputPath"`
	Assets     map[string]protocol.Asset `json:"assets"`
	LogsPath   *string                   `json:"logsPath"`
}

// pdfInput is the input every test triggers the pipeline with: its URL makes
// a document of several pages, with at least one table.
var pdfInput = map[string]any{"pdfUrl": "https://example.com/reports/e2e.pdf", "extractTables": true}

// runPDF triggers the pdf-processor pipeline, waits until the run has
// finished and returns it with its task runs by task id.
func (s *stack) runPDF(t *testing.T) (pipelineRun, map[string]taskRun) {
	t.Helper()
	a := s.do(t, http.MethodPost, "/api/pipelines/"+pdf.ServiceID+"/trigger", map[string]any{"input": pdfInput})
	require.Equal(t, http.StatusCreated, a.status, "trigger: %s", a.body)
	var trig struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	require.NoError(t, json.Unmarshal(a.body, &trig))
	require.NotEmpty(t, trig.PipelineRunID)

	var run pipelineRun
	// Polled here rather than in require.Eventually, whose condition runs in another goroutine,
	// where getJSON's require must not fail the test.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// Without the map node's items: tasks are the pipeline's nodes, one each.
		s.getJSON(t, "/api/runs/"+trig.PipelineRunID+"?items=false", &run)
		if run.Status != "running" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the pipeline run did not finish")
	}
	tasks := map[string]taskRun{}
	for _, tr := range run.Tasks {
		tasks[tr.TaskID] = tr
	}
	if run.Status != "completed" {
		for _, tr := range run.Tasks {
			if tr.Error != nil {
				t.Logf("task %s (%s): %s", tr.TaskID, tr.Status, *tr.Error)
			}
		}
	}
	require.Equal(t, "completed", run.Status, "run %s: error %v, tasks %+v", run.ID, run.Error, run.Tasks)
	return run, tasks
}

// open opens cfg with storage.Open, as a worker or the orchestrator would,
// and closes it when the test ends.
func open(t *testing.T, cfg storage.Config) *storage.Backend {
	t.Helper()
	b, err := storage.Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// tapListener records every byte the worker's server reads from its
// connections: the raw requests the orchestrator sent to the worker.
type tapListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*bytes.Buffer
}

// Accept accepts a connection whose reads are recorded.
func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	buf := &bytes.Buffer{}
	l.mu.Lock()
	l.conns = append(l.conns, buf)
	l.mu.Unlock()
	return &tapConn{Conn: c, l: l, buf: buf}, nil
}

type tapConn struct {
	net.Conn
	l   *tapListener
	buf *bytes.Buffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.mu.Lock()
	c.buf.Write(p[:n])
	c.l.mu.Unlock()
	return n, err
}

// dispatch is one request the worker received.
type dispatch struct {
	method, path string
	raw          []byte // the whole request as sent: request line, headers and body
	body         []byte
}

// dispatches stops the worker, so that everything sent to it has been read,
// and returns the requests it received, a batch dispatch's dispatches one by one.
func (s *stack) dispatches(t *testing.T) []dispatch {
	t.Helper()
	s.stopWorker()
	s.tap.mu.Lock()
	defer s.tap.mu.Unlock()
	var out []dispatch
	for _, conn := range s.tap.conns {
		data := conn.Bytes()
		src := bytes.NewReader(data)
		r := bufio.NewReader(src)
		// consumed is how much of data the requests read so far took.
		consumed := func() int { return len(data) - src.Len() - r.Buffered() }
		for {
			start := consumed()
			req, err := http.ReadRequest(r)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			body, err := io.ReadAll(req.Body)
			require.NoError(t, err)
			raw := data[start:consumed()]
			if req.Method == http.MethodPost && req.URL.Path == protocol.DispatchBatchPath {
				// A batch dispatch: each of its dispatches, as if it had come alone (raw is
				// the whole request's).
				var b protocol.DispatchBatchRequest
				require.NoError(t, json.Unmarshal(body, &b))
				for _, it := range b.Dispatches {
					one, err := json.Marshal(it.DispatchRequest)
					require.NoError(t, err)
					out = append(out, dispatch{method: req.Method, path: "/tasks/" + it.TaskID, raw: raw, body: one})
				}
				continue
			}
			out = append(out, dispatch{method: req.Method, path: req.URL.Path, raw: raw, body: body})
		}
	}
	return out
}
