package bmc

import (
	"context"
	"fmt"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
)

// PowerState is a server's chassis power state.
type PowerState string

// Power states.
const (
	PowerOn  PowerState = "on"
	PowerOff PowerState = "off"
)

// PowerAction is a chassis control request.
type PowerAction string

// Power actions.
const (
	ActionOn      PowerAction = "on"
	ActionOff     PowerAction = "off"      // hard power off
	ActionSoftOff PowerAction = "soft-off" // ACPI shutdown request to the OS
	ActionCycle   PowerAction = "cycle"    // off, then on
	ActionReset   PowerAction = "reset"    // hard reset
)

// PowerChange says what SetPower did.
type PowerChange struct {
	Before PowerState `json:"before"`
	// Sent is the chassis control command sent, or "" when the server was
	// already in the requested state (a no-op).
	Sent PowerAction `json:"sent,omitempty"`
}

// Changed reports whether a command was sent.
func (p PowerChange) Changed() bool { return p.Sent != "" }

// PowerState reads the chassis power state.
func (c *Client) PowerState(ctx context.Context) (PowerState, error) {
	var st PowerState
	err := c.do(ctx, "reading power state", func(ctx context.Context, conn *client.Client) error {
		var err error
		st, err = powerState(ctx, conn)
		return err
	})
	return st, err
}

func powerState(ctx context.Context, conn *client.Client) (PowerState, error) {
	res, err := conn.GetChassisStatus(ctx)
	if err != nil {
		return "", classify("Get Chassis Status", err)
	}
	if res.PowerIsOn {
		return PowerOn, nil
	}
	return PowerOff, nil
}

// SetPower applies a power action idempotently: on when on, off or
// soft-off when off are no-ops; cycle or reset of a server that is off
// powers it on (the intent, a fresh boot, is the same). The state is read
// and the command sent in one BMC command, so MinInterval applies once.
func (c *Client) SetPower(ctx context.Context, a PowerAction) (PowerChange, error) {
	var ch PowerChange
	err := c.do(ctx, "power "+string(a), func(ctx context.Context, conn *client.Client) error {
		before, err := powerState(ctx, conn)
		if err != nil {
			return err
		}
		ch = PowerChange{Before: before}
		var ctl chassis.ChassisControl
		switch {
		case a == ActionOn && before == PowerOn,
			(a == ActionOff || a == ActionSoftOff) && before == PowerOff:
			c.log.Info("Power already in the requested state", "power", before, "action", a)
			return nil
		case a == ActionOn, (a == ActionCycle || a == ActionReset) && before == PowerOff:
			ch.Sent, ctl = ActionOn, chassis.ChassisControlPowerUp
		case a == ActionOff:
			ch.Sent, ctl = ActionOff, chassis.ChassisControlPowerDown
		case a == ActionSoftOff:
			ch.Sent, ctl = ActionSoftOff, chassis.ChassisControlSoftShutdown
		case a == ActionCycle:
			ch.Sent, ctl = ActionCycle, chassis.ChassisControlPowerCycle
		case a == ActionReset:
			ch.Sent, ctl = ActionReset, chassis.ChassisControlHardReset
		default:
			return fmt.Errorf("unknown power action %q: use on, off, soft-off, cycle or reset: %w", a, ErrConfig)
		}
		c.log.Info("Sending chassis control", "power", before, "command", ch.Sent)
		if _, err := conn.ChassisControl(ctx, ctl); err != nil {
			return classify("Chassis Control ("+string(ch.Sent)+")", err)
		}
		return nil
	})
	return ch, err
}

// WaitPower polls the power state until it is want or timeout passes. The
// timeout error wraps ErrTimeout and says the last state seen.
func (c *Client) WaitPower(ctx context.Context, want PowerState, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	interval := max(c.opts.PollInterval, c.opts.MinInterval)
	var last PowerState
	for {
		st, err := c.PowerState(ctx)
		if err == nil {
			if st == want {
				return nil
			}
			last = st
		}
		wait := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			wait.Stop()
			if last == "" && err != nil {
				return fmt.Errorf("waiting for power %s: %w", want, err)
			}
			return fmt.Errorf("waiting for power %s on %s: %w: still %s after %s", want, c.t, ErrTimeout, last, timeout)
		case <-wait.C:
		}
	}
}
