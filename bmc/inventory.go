package bmc

import (
	"context"
	"errors"
	"fmt"

	"github.com/bougou/go-ipmi/pkg/client"
)

// DeviceID is the BMC's Get Device ID answer.
type DeviceID struct {
	DeviceID       uint8  `json:"deviceID"`
	Revision       uint8  `json:"revision"`
	Firmware       string `json:"firmware"`
	IPMIVersion    string `json:"ipmiVersion"`
	ManufacturerID uint32 `json:"manufacturerID"`
	ProductID      uint16 `json:"productID"`
	Available      bool   `json:"available"`
}

// DeviceID reads the BMC's device ID.
func (c *Client) DeviceID(ctx context.Context) (DeviceID, error) {
	var d DeviceID
	err := c.do(ctx, "reading device ID", func(ctx context.Context, conn *client.Client) error {
		res, err := conn.GetDeviceID(ctx)
		if err != nil {
			return classify("Get Device ID", err)
		}
		d = DeviceID{
			DeviceID: res.DeviceID, Revision: res.DeviceRevision,
			Firmware:       fmt.Sprintf("%d.%02x", res.MajorFirmwareRevision, res.MinorFirmwareRevision),
			IPMIVersion:    fmt.Sprintf("%d.%d", res.MajorIPMIVersion, res.MinorIPMIVersion),
			ManufacturerID: res.ManufacturerID, ProductID: res.ProductID,
			Available: res.DeviceAvailable,
		}
		return nil
	})
	return d, err
}

// Inventory is what a server's BMC says about its hardware.
type Inventory struct {
	Device  DeviceID `json:"device"`
	FRU     *FRU     `json:"fru,omitempty"`
	Facts   Facts    `json:"facts"`
	Sensors []Sensor `json:"sensors"`
}

// Inventory reads the device ID, FRU device 0 and the sensors. A BMC
// without FRU data (completion code 0xCB or 0xCC) gives an inventory
// without FRU and facts rather than an error.
func (c *Client) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	var err error
	if inv.Device, err = c.DeviceID(ctx); err != nil {
		return inv, err
	}
	f, err := c.FRU(ctx)
	var ce *CompletionError
	switch {
	case err == nil:
		inv.FRU, inv.Facts = &f, f.Facts()
	case errors.As(err, &ce) && (ce.Code == 0xCB || ce.Code == 0xCC):
		c.log.Info("BMC has no FRU data", "err", err)
	default:
		return inv, err
	}
	if inv.Sensors, err = c.Sensors(ctx); err != nil {
		return inv, err
	}
	if inv.Sensors == nil {
		inv.Sensors = []Sensor{}
	}
	return inv, nil
}
