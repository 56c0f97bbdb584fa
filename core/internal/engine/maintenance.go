package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
)

// MaintenanceStatus is the maintenance status: the mode, whether maintenance can be (or has
// been) reached, the runs waiting and in flight, and a sentence. The API answers it as
// protocol.MaintenanceStatus.
type MaintenanceStatus struct {
	Mode protocol.MaintenanceMode
	// CanEnterMaintenance: nothing is in flight (pending runs wait and do not hold maintenance
	// back).
	CanEnterMaintenance bool
	// PendingTasks are runs ready or delayed that wait to be claimed.
	PendingTasks int64
	// RunningTasks are runs in flight: dispatching or running.
	RunningTasks  int64
	ModeChangedAt time.Time
	Message       string
}

// MaintenanceMode is the mode and when it last changed, as /health reports it.
type MaintenanceMode struct {
	Mode          protocol.MaintenanceMode
	ModeChangedAt time.Time
}

// Maintenance reads the maintenance status. Reading it moves waiting_for_maintenance on to
// maintenance when nothing is in flight any more.
func (e *Engine) Maintenance(ctx context.Context) (MaintenanceStatus, error) {
	if _, err := e.SettleMaintenance(ctx); err != nil {
		return MaintenanceStatus{}, err
	}
	row, err := queries.MaintenanceStatus(ctx, e.db)
	if err != nil {
		return MaintenanceStatus{}, fmt.Errorf("read maintenance status: %w", err)
	}
	s := MaintenanceStatus{Mode: row.Mode, ModeChangedAt: row.ModeChangedAt, PendingTasks: row.Pending, RunningTasks: row.InFlight}
	e.seeMode(s.Mode)
	s.ModeChangedAt = s.ModeChangedAt.UTC()
	s.CanEnterMaintenance = s.RunningTasks == 0
	s.Message = maintenanceMessage(s)
	return s, nil
}

func maintenanceMessage(s MaintenanceStatus) string {
	switch s.Mode {
	case protocol.MaintenanceWaiting:
		if s.RunningTasks == 0 {
			return "Ready to enter maintenance mode"
		}
		return fmt.Sprintf("Waiting for %d tasks to complete; no new tasks are claimed", s.RunningTasks)
	case protocol.MaintenanceOn:
		return "Maintenance mode active: no tasks are claimed; new work is accepted and waits"
	}
	return "Orchestrator is running normally"
}

// EnterMaintenance stops all claiming: running becomes waiting_for_maintenance, or
// maintenance at once when nothing is in flight. Once it returns, no claim of any instance
// commits: the change takes the claim lock, and every claim reads the mode under it. Entering
// from another mode is a conflict (409 MAINTENANCE_STATE) that names the current mode.
func (e *Engine) EnterMaintenance(ctx context.Context) (MaintenanceStatus, error) {
	to, err := e.changeMode(ctx, func(mode protocol.MaintenanceMode, inflight int64) (protocol.MaintenanceMode, error) {
		if mode != protocol.MaintenanceOff {
			return "", maintenanceConflict(mode, "cannot enter maintenance: the orchestrator is already in mode %s", mode)
		}
		if inflight == 0 {
			return protocol.MaintenanceOn, nil
		}
		return protocol.MaintenanceWaiting, nil
	})
	if err != nil {
		return MaintenanceStatus{}, err
	}
	e.log.Info("maintenance requested: no new claims", "mode", to)
	return e.Maintenance(ctx)
}

// ExitMaintenance resumes claiming from waiting_for_maintenance or maintenance and wakes the
// standalone loops of every instance. Exiting while running is a conflict (409
// MAINTENANCE_STATE).
func (e *Engine) ExitMaintenance(ctx context.Context) (MaintenanceStatus, error) {
	_, err := e.changeMode(ctx, func(mode protocol.MaintenanceMode, _ int64) (protocol.MaintenanceMode, error) {
		if mode == protocol.MaintenanceOff {
			return "", maintenanceConflict(mode, "cannot exit maintenance: the orchestrator is running")
		}
		return protocol.MaintenanceOff, nil
	})
	if err != nil {
		return MaintenanceStatus{}, err
	}
	e.log.Info("maintenance ended: claiming resumes")
	return e.Maintenance(ctx)
}

func maintenanceConflict(mode protocol.MaintenanceMode, format string, args ...any) *Error {
	err := conflict("MAINTENANCE_STATE", format, args...)
	err.Details = map[string]string{"mode": string(mode)}
	return err
}

// changeMode sets the mode next picks from the current mode and the runs in flight, under the
// claim lock, notifies the loops when claiming resumes, and returns the new mode.
func (e *Engine) changeMode(ctx context.Context, next func(mode protocol.MaintenanceMode, inflight int64) (protocol.MaintenanceMode, error)) (protocol.MaintenanceMode, error) {
	var to protocol.MaintenanceMode
	err := e.db.InTx(ctx, func(tx dbtx) error {
		if err := queries.LockClaims(ctx, tx, claimLock); err != nil {
			return fmt.Errorf("take claim lock: %w", err)
		}
		state, err := queries.MaintenanceLockState(ctx, tx)
		if err != nil {
			if errors.Is(err, database.ErrNotFound) {
				return errors.New("read maintenance mode: orchestrator_state has no row; run the migrations (pipeweave db migrate)")
			}
			return fmt.Errorf("read maintenance mode: %w", err)
		}
		e.seeMode(state.Mode)
		if to, err = next(state.Mode, state.InFlight); err != nil {
			return err
		}
		if err := queries.MaintenanceSetMode(ctx, tx, to); err != nil {
			return fmt.Errorf("set maintenance mode: %w", err)
		}
		if to == protocol.MaintenanceOff {
			if err := queries.NotifyReady(ctx, tx); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	e.seeMode(to)
	return to, nil
}

// SettleMaintenance reads the mode and, in waiting_for_maintenance with nothing in flight,
// moves it on to maintenance. It returns the mode then. While running it costs one read of
// the state row.
func (e *Engine) SettleMaintenance(ctx context.Context) (MaintenanceMode, error) {
	row, err := queries.MaintenanceMode(ctx, e.db)
	switch {
	case errors.Is(err, database.ErrNotFound):
		return MaintenanceMode{Mode: protocol.MaintenanceOff}, nil
	case err != nil:
		return MaintenanceMode{}, fmt.Errorf("read maintenance mode: %w", err)
	}
	m := MaintenanceMode(row)
	e.seeMode(m.Mode)
	if m.Mode == protocol.MaintenanceWaiting {
		// Under the claim lock, so that no mode change interleaves with the check.
		err = e.db.InTx(ctx, func(tx dbtx) error {
			if err := queries.LockClaims(ctx, tx, claimLock); err != nil {
				return fmt.Errorf("take claim lock: %w", err)
			}
			settled, err := queries.MaintenanceSettle(ctx, tx)
			switch {
			case errors.Is(err, database.ErrNotFound):
				return nil
			case err != nil:
				return fmt.Errorf("enter maintenance: %w", err)
			}
			m = MaintenanceMode(settled)
			return nil
		})
		if err != nil {
			return m, err
		}
		if m.Mode == protocol.MaintenanceOn {
			e.seeMode(m.Mode)
			e.log.Info("maintenance mode entered: nothing is in flight")
		}
	}
	m.ModeChangedAt = m.ModeChangedAt.UTC()
	return m, nil
}

// seeMode records the last mode this engine read, the hint that tells the hot paths
// (callbacks, dispatch results) whether to check for the end of waiting_for_maintenance.
func (e *Engine) seeMode(mode protocol.MaintenanceMode) {
	e.notRunning.Store(mode != protocol.MaintenanceOff)
}

// settleIfWaiting is SettleMaintenance after something ended attempts, when this engine last
// saw a mode other than running: while running it costs nothing. A failure only waits for the
// next sweep or status read.
func (e *Engine) settleIfWaiting(ctx context.Context) {
	if !e.notRunning.Load() {
		return
	}
	if _, err := e.SettleMaintenance(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("checking for the end of waiting_for_maintenance failed; the next sweep checks again", "err", err)
	}
}
