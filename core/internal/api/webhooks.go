package api

import (
	"net/http"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// MaxWebhookBodyBytes caps the body of PUT /api/webhooks/{id}.
const MaxWebhookBodyBytes = 16 << 10

// putWebhook serves PUT /api/webhooks/{id}: 201 with the webhook when it is new (and its
// generated secret, once), 200 when it replaced one.
func (s *Server) putWebhook(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxWebhookBodyBytes)
	var req protocol.WebhookPut
	if !s.decodeStrict(w, r, &req) {
		return
	}
	out, created, err := s.eng.PutWebhook(r.Context(), r.PathValue("id"), req)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.reply(w, r, status, out, err)
}

// deleteWebhook serves DELETE /api/webhooks/{id}.
func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.eng.DeleteWebhook(r.Context(), id)
	s.reply(w, r, http.StatusOK, map[string]any{"success": true, "webhookId": id}, err)
}

// webhookDeliveries serves GET /api/webhooks/{id}/deliveries?status=&limit=&cursor=.
func (s *Server) webhookDeliveries(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	page, err := s.eng.WebhookDeliveries(r.Context(), r.PathValue("id"), engine.WebhookDeliveryFilter{Status: q.Get("status"),
		Cursor: q.Get("cursor"), Limit: limit})
	s.reply(w, r, http.StatusOK, page, err)
}

// resendWebhookDelivery serves POST /api/webhooks/{id}/deliveries/{deliveryId}/resend.
func (s *Server) resendWebhookDelivery(w http.ResponseWriter, r *http.Request) {
	d, err := s.eng.ResendWebhookDelivery(r.Context(), r.PathValue("id"), r.PathValue("deliveryId"))
	s.reply(w, r, http.StatusOK, d, err)
}
