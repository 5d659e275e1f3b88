package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/libvirt"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// Record is what a lab process writes about itself (lab.json): enough for
// `lab status`, and for `lab down` to remove everything even when the
// process died without tearing down.
type Record struct {
	Name     string    `json:"name"`
	SpecFile string    `json:"specFile"`
	Dir      string    `json:"dir"`
	PID      int       `json:"pid"`
	PIDStart uint64    `json:"pidStart"`
	Started  time.Time `json:"started"`
	Ready    bool      `json:"ready"`
	Stopped  bool      `json:"stopped,omitempty"`
	UpTook   string    `json:"upTook,omitempty"`
	Error    string    `json:"error,omitempty"`
	// NetID and MachinesID are the ids in the names of the lab's
	// namespaces, links and machine cgroups.
	NetID      string `json:"netID,omitempty"`
	MachinesID string `json:"machinesID,omitempty"`
	// Procs are processes started outside the lab's namespaces and
	// cgroups (BMCs, libvirtd, virtlogd).
	Procs   []Proc   `json:"procs,omitempty"`
	Domains []string `json:"domains,omitempty"`
	// LibvirtIptables is the LIBVIRT_* iptables chains that existed
	// before the lab started its libvirtd: they are not the lab's, and it
	// removes only chains that appeared since. Nil when the lab started no
	// libvirtd (none, or it used one that already ran): then it removes no
	// chain at all.
	LibvirtIptables *libvirt.IptablesSnapshot `json:"libvirtIptables,omitempty"`
	// PXELog is the log of the VMs' DHCP and TFTP server (dnsmasq).
	PXELog string `json:"pxeLog,omitempty"`

	Servers     []RecordServer `json:"servers,omitempty"`
	JumpHosts   []RecordJump   `json:"jumpHosts,omitempty"`
	RouterVty   string         `json:"routerVty,omitempty"`
	CoreRouters []RecordCore   `json:"coreRouters,omitempty"`
	APIVIP      string         `json:"apiVIP,omitempty"`
	Inventory   string         `json:"inventory,omitempty"`
	TFVars      string         `json:"tfvars,omitempty"`
}

// Proc is a process the lab started, named by pid and start time.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	What  string `json:"what"`
}

// Alive reports whether the process still runs (and is the same one).
func (p Proc) Alive() bool {
	return labnet.Alive(p.PID, p.Start)
}

// RecordServer is one lab server.
type RecordServer struct {
	Name    string   `json:"name"`
	Center  string   `json:"center"`
	Rack    string   `json:"rack"`
	Machine string   `json:"machine"`
	Boot    string   `json:"boot,omitempty"`
	Address string   `json:"address"`
	BMC     string   `json:"bmc"`
	Roles   []string `json:"roles"`
}

// RecordCore is a site's core router.
type RecordCore struct {
	Name string `json:"name"`
	Site string `json:"site"`
	ASN  uint32 `json:"asn"`
	Vty  string `json:"vty"`
	// Netns is its network namespace (ip netns exec NETNS ...): a client
	// outside the racks.
	Netns string `json:"netns"`
}

// RecordJump is a center's jump host.
type RecordJump struct {
	Name    string `json:"name"`
	Center  string `json:"center"`
	Address string `json:"address"`
}

func (r *Record) save(p Paths) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(p.Record(), append(b, '\n'), 0o644)
}

// ErrNoLab is returned when a directory holds no lab.
var ErrNoLab = errors.New("no lab")

// ReadRecord reads the record of the lab in dir.
func ReadRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(Paths{Dir: dir}.Record())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoLab, dir)
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", Paths{Dir: dir}.Record(), err)
	}
	return &r, nil
}

// Process is the lab process itself.
func (r *Record) Process() Proc { return Proc{PID: r.PID, Start: r.PIDStart, What: "lab " + r.Name} }
