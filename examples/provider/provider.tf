terraform {
  required_providers {
    tricenter = {
      source = "tricenter/tricenter"
    }
  }
}

# Every argument is optional and falls back to an environment variable
# (TRICENTER_SSH_USER, TRICENTER_BMC_PASSWORD, ...).
provider "tricenter" {
  ssh = {
    user             = "root"
    private_key_file = pathexpand("~/.ssh/id_ed25519")
    known_hosts      = [pathexpand("~/.ssh/known_hosts")]
  }

  # Air-gapped installs: the pinned binaries and their sha256 manifest.
  artifact_dir = "${path.root}/.cache/artifacts"
  concurrency  = 16

  bmc = {
    user          = "admin"
    password_env  = "TRICENTER_BMC_PASSWORD" # the name of the variable, never the password
    cipher_suites = [17, 3]
    min_interval  = "1s"
  }
}
