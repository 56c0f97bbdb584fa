package api

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/internal/wire"
)

// uploadPath is the route of temporary uploads, whose body cap is MaxUploadBytes (plus
// uploadOverhead for the multipart framing) instead of MaxBodyBytes.
const uploadPath = "/api/upload/temp"

// uploadOverhead is what an upload's body may carry beyond the file: part headers, the
// boundaries, small form fields.
const uploadOverhead = 1 << 20

// bodyLimit is the body cap of r: MaxUploadBytes (plus the multipart framing) for an upload,
// MaxBodyBytes for everything else.
func (s *Server) bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost && r.URL.Path == uploadPath {
		return s.opts.MaxUploadBytes + uploadOverhead
	}
	if isWorkerBodyRoute(r) {
		if strings.HasPrefix(r.URL.Path, "/api/callback/") {
			// Room for an inline output; the engine refuses one over the cap with 413.
			return s.opts.MaxWorkerBodyBytes + s.opts.MaxInlineOutputBytes
		}
		return s.opts.MaxWorkerBodyBytes
	}
	return s.opts.MaxBodyBytes
}

func badUpload(code, format string, args ...any) *engine.Error {
	return &engine.Error{Kind: engine.ErrInvalid, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// multipartError translates an error reading the multipart body: over the body cap is 413,
// anything else a malformed body (400).
func multipartError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &engine.Error{Kind: engine.ErrTooLarge, Code: "BODY_TOO_LARGE", Msg: fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit)}
	}
	return badUpload("MALFORMED_MULTIPART", "malformed multipart body: %v", err)
}

// uploadTemp serves POST /api/upload/temp: one file in the multipart field "file", streamed
// into storage. Other non-file fields are ignored; a file in another field, a second file or
// none at all is 400.
func (s *Server) uploadTemp(w http.ResponseWriter, r *http.Request) {
	mr, err := r.MultipartReader()
	if err != nil {
		s.fail(w, r, badUpload("NOT_MULTIPART", `the body must be multipart/form-data with the file in field "file": %v`, err))
		return
	}
	// skip reads a part that is not the file: a plain field is discarded, a file is refused.
	skip := func(p *multipart.Part, what string) error {
		if p.FileName() != "" {
			return badUpload(what, `only one file, in field "file", may be uploaded; got a file in field %q`, p.FormName())
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return multipartError(err)
		}
		return nil
	}
	var file *multipart.Part
	for file == nil {
		p, err := mr.NextPart()
		if err == io.EOF {
			s.fail(w, r, badUpload("NO_FILE", `no file provided: send it as multipart/form-data in field "file"`))
			return
		}
		if err != nil {
			s.fail(w, r, multipartError(err))
			return
		}
		if p.FormName() == "file" {
			file = p
		} else if err := skip(p, "UNEXPECTED_FILE"); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	rest := func() error {
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return multipartError(err)
			}
			if p.FormName() == "file" {
				return badUpload("TOO_MANY_FILES", `only one file, in field "file", may be uploaded; got a second one`)
			}
			if err := skip(p, "TOO_MANY_FILES"); err != nil {
				return err
			}
		}
	}
	// The file name and type are stored as text: the input rules apply (inputcheck.go).
	for field, v := range map[string]string{"filename": file.FileName(), "file Content-Type": file.Header.Get("Content-Type")} {
		if why := checkText(v); why != "" {
			(&inputProblem{"INVALID_TEXT", field, why}).write(w)
			return
		}
	}
	res, err := s.eng.StoreTempUpload(r.Context(), engine.UploadFile{Filename: file.FileName(), MimeType: file.Header.Get("Content-Type"),
		Body: file, MaxBytes: s.opts.MaxUploadBytes, Rest: rest})
	answer(s, w, r, http.StatusCreated, res, err, wire.TempUpload)
}

func (s *Server) deleteTempUpload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.eng.DeleteTempUpload(r.Context(), id)
	s.reply(w, r, http.StatusOK, map[string]any{"success": true, "uploadId": id}, err)
}
