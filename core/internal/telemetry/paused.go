package telemetry

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Paused is a task type or a pipeline paused now: Kind is "task" or "pipeline".
type Paused struct {
	Kind, ID string
}

// PausedList reads what is paused now.
type PausedList func(ctx context.Context) ([]Paused, error)

// RegisterPaused adds pipeweave_paused{kind, id}, read at scrape time through read: 1 for each
// task type and pipeline paused now (none when nothing is).
func (m *Metrics) RegisterPaused(read PausedList) {
	m.Registry.MustRegister(&pausedCollector{read: read,
		desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "paused"),
			"1 for each task type (kind task) and pipeline (kind pipeline) paused now, read at scrape time.",
			[]string{"kind", "id"}, nil)})
}

type pausedCollector struct {
	read PausedList
	desc *prometheus.Desc
}

func (c *pausedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *pausedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	paused, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, p := range paused {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, p.Kind, p.ID)
	}
}
