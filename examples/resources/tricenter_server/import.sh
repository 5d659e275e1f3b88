# Import by BMC endpoint, [user@]address[:port]. The password comes from the
# provider's bmc block (bmc.password_env, bmc.password_file or
# TRICENTER_BMC_PASSWORD); the first refresh records the power state the BMC
# reports.
terraform import tricenter_server.dc1_r01_s01 198.18.128.10:623
terraform import tricenter_server.dc1_r01_s01 admin@198.18.128.10
