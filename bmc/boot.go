package bmc

import (
	"context"
	"fmt"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// BootDevice is a next-boot device.
type BootDevice string

// Boot devices.
const (
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
	// BootNone: no override, the firmware's boot order applies.
	BootNone BootDevice = "none"
	// BootOther is any other override (CD-ROM, BIOS setup, ...).
	BootOther BootDevice = "other"
)

// BootOptions is a next-boot request.
type BootOptions struct {
	Device BootDevice `json:"device"`
	// UEFI selects an EFI boot; false is a legacy (PC compatible) boot.
	UEFI bool `json:"uefi"`
	// Persistent keeps the override for every boot; false (the default)
	// applies it to the next boot only.
	Persistent bool `json:"persistent,omitempty"`
}

// BootStatus is the boot override the BMC reports.
type BootStatus struct {
	Device BootDevice `json:"device"`
	UEFI   bool       `json:"uefi"`
	// Valid is the BMC's "boot flags valid" bit; BMCs clear it after the
	// boot that used the override.
	Valid bool `json:"valid"`
}

// SetBootDevice sets the next boot device and reads it back. A BMC that
// reports another device than the one set is an error.
func (c *Client) SetBootDevice(ctx context.Context, o BootOptions) (BootStatus, error) {
	var sel types.BootDeviceSelector
	switch o.Device {
	case BootPXE:
		sel = types.BootDeviceSelectorForcePXE
	case BootDisk:
		sel = types.BootDeviceSelectorForceHardDrive
	default:
		return BootStatus{}, fmt.Errorf("setting boot device on %s: unknown device %q: use pxe or disk: %w", c.t, o.Device, ErrConfig)
	}
	bootType := types.BIOSBootTypeLegacy
	if o.UEFI {
		bootType = types.BIOSBootTypeEFI
	}
	var st BootStatus
	err := c.do(ctx, "setting boot device "+string(o.Device), func(ctx context.Context, conn *client.Client) error {
		c.log.Info("Setting next boot device", "device", o.Device, "uefi", o.UEFI, "persistent", o.Persistent)
		if err := conn.SetBootDevice(ctx, sel, bootType, o.Persistent); err != nil {
			return classify("Set System Boot Options (boot flags)", err)
		}
		var err error
		st, err = bootStatus(ctx, conn)
		if err != nil {
			return err
		}
		if st.Device != o.Device {
			return fmt.Errorf("the BMC accepted boot device %s but reports %s", o.Device, st.Device)
		}
		if st.UEFI != o.UEFI {
			c.log.Debug("BMC does not report the requested boot mode back", "uefi", o.UEFI, "reported", st.UEFI)
		}
		return nil
	})
	return st, err
}

// BootStatus reads the boot override.
func (c *Client) BootStatus(ctx context.Context) (BootStatus, error) {
	var st BootStatus
	err := c.do(ctx, "reading boot device", func(ctx context.Context, conn *client.Client) error {
		var err error
		st, err = bootStatus(ctx, conn)
		return err
	})
	return st, err
}

func bootStatus(ctx context.Context, conn *client.Client) (BootStatus, error) {
	p := &types.BootOptionParam_BootFlags{}
	if err := conn.GetSystemBootOptionsParamFor(ctx, p); err != nil {
		return BootStatus{}, classify("Get System Boot Options (boot flags)", err)
	}
	st := BootStatus{UEFI: p.BIOSBootType == types.BIOSBootTypeEFI, Valid: p.BootFlagsValid}
	switch p.BootDeviceSelector {
	case types.BootDeviceSelectorForcePXE:
		st.Device = BootPXE
	case types.BootDeviceSelectorForceHardDrive, types.BootDeviceSelectorForceHardDriveSafe:
		st.Device = BootDisk
	case types.BootDeviceSelectorNoOverride:
		st.Device = BootNone
	default:
		st.Device = BootOther
	}
	return st, nil
}
