package provider

import (
	"errors"
	"os"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// Lab address indices (ipmisim.LabAddr) of the provider tests: this
// package's block is 762-1015 (198.18.51.0/24). 762-779 BMCs that run,
// 1000-1015 addresses where nothing listens.
const (
	labIdxServer      = 762
	labIdxUnreachable = 1000
)

// testAccProtoV6ProviderFactories serve the provider in-process to the
// terraform binary that terraform-plugin-testing runs.
var testAccProtoV6ProviderFactories = map[string]func() (tfprotov6.ProviderServer, error){
	"tricenter": providerserver.NewProtocol6WithError(New("test")()),
}

// testAccPreCheck runs before an acceptance test starts real peers: it
// needs TF_ACC=1 (skipped without it, failed without it under CI=true) and needs the terraform binary (Terraform 1.11 or
// later, for write-only arguments), which it hands to
// terraform-plugin-testing so that nothing is downloaded.
func testAccPreCheck(t *testing.T) {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		// Under CI=true this fails instead of skipping (make test sets it).
		testenv.Need(t, errors.New("acceptance test: set TF_ACC=1 (make test and make testacc do)"))
	}
	testenv.Terraform(t)
}
