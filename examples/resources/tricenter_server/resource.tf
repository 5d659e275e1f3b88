resource "tricenter_server" "dc1_r01_s01" {
  name    = "dc1-r01-s01"
  address = "198.18.128.10"
  user    = "admin"

  # The password is read from this variable at every refresh and apply;
  # only the variable's name is stored.
  password_env = "TRICENTER_BMC_PASSWORD"

  power_state = "on"
  boot_device = "pxe" # set before power on; one-time unless boot_persistent

  # Destroy leaves the server running unless this is true.
  power_off_on_destroy = false

  timeouts {
    create = "15m"
  }
}
