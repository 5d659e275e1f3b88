#!/usr/bin/env bash
# examples/lab/main.tf with terraform on the example lab (root, VMs
# included; about 30 minutes): on three fresh labs the cold terraform
# apply, then three each of terraform plan and the no-op terraform apply,
# then three plans with one worker powered off through its BMC. Prints
# min/median/max and the ratios to the goals (plan and no-op apply ≤ 10%
# of the cold apply; a plan with a server off ≤ 2× the healthy plan).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v terraform >/dev/null || { echo "terraform not on PATH: install Terraform >= 1.11"; exit 1; }
./hack/artifacts/build.sh >/dev/null
TF_ACC_TERRAFORM_PATH=$(command -v terraform) go test -count=1 -timeout 120m -tags labacc -run '^$' -bench '^BenchmarkLabTerraform$' -benchtime 1x -v ./acceptance/lab 2>&1 |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^time=' -e '^goos' -e '^goarch' -e '^pkg:' -e '^cpu:' -e '^BenchmarkLabTerraform'
