package telemetry

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// MaintenanceModes are the values of the mode label of pipeweave_maintenance_mode.
var MaintenanceModes = []string{"running", "waiting_for_maintenance", "maintenance"}

// MaintenanceMode reads the current maintenance mode.
type MaintenanceMode func(ctx context.Context) (string, error)

// RegisterMaintenance adds pipeweave_maintenance_mode{mode}, read at scrape time through read:
// 1 for the current mode, 0 for the others.
func (m *Metrics) RegisterMaintenance(read MaintenanceMode) {
	m.Registry.MustRegister(&maintenanceCollector{read: read,
		desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "maintenance_mode"),
			"The orchestrator's maintenance mode (running, waiting_for_maintenance, maintenance): 1 for the current one, read at scrape time.",
			[]string{"mode"}, nil)})
}

type maintenanceCollector struct {
	read MaintenanceMode
	desc *prometheus.Desc
}

func (c *maintenanceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *maintenanceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	mode, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, m := range MaintenanceModes {
		v := 0.0
		if m == mode {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, m)
	}
}
