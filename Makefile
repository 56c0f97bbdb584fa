# PipeWeave build targets.
#
# `sam build` calls build-<LogicalId> for each function of template.yaml (Metadata:
# BuildMethod: makefile) with ARTIFACTS_DIR set; each target writes one static Linux binary
# named bootstrap, as the provided.al2023 runtime expects. LAMBDA_GOARCH must match the
# Architectures of template.yaml (x86_64 = amd64; for arm64 change both).
#
#   make build-all     host binaries of the four functions and the CLI in ./bin
#   make lambda        the four Lambda bootstraps in ./bin/lambda/<LogicalId>/bootstrap
#
# STORAGE_DRIVERS lists the storage providers the functions link (comma-separated, the
# provider names of STORAGE_BACKENDS): all four by default; e.g. `make lambda
# STORAGE_DRIVERS=local,aws-s3` leaves GCS and MinIO out (build tags pipeweave_no_gcs and
# pipeweave_no_minio, see core/storage/drivers). heartbeat-sweep links none in any case.
#   make image         the Cloud Run image (deploy/cloudrun/Dockerfile), tagged pipeweave:dev
#   make test          scripts/test (what CI runs)

GO ?= go
LAMBDA_GOARCH := amd64
BIN := bin
FUNCTIONS := api process heartbeat-sweep dlq-purge

# Storage drivers: provider name → build tag suffix (aws-s3's driver is core/storage/s3).
ALL_STORAGE_DRIVERS := local aws-s3 gcs minio
STORAGE_DRIVERS ?= local,aws-s3,gcs,minio
comma := ,
space := $(subst ,, )
storage_drivers := $(sort $(subst $(comma),$(space),$(STORAGE_DRIVERS)))
ifneq ($(filter-out $(ALL_STORAGE_DRIVERS),$(storage_drivers)),)
$(error STORAGE_DRIVERS: unknown provider(s) $(filter-out $(ALL_STORAGE_DRIVERS),$(storage_drivers)) (want some of $(ALL_STORAGE_DRIVERS)))
endif
DRIVER_TAGS := $(addprefix pipeweave_no_,$(subst aws-s3,s3,$(filter-out $(storage_drivers),$(ALL_STORAGE_DRIVERS))))
LAMBDA_TAGS := $(subst $(space),$(comma),$(strip lambda.norpc $(DRIVER_TAGS)))
HOST_TAGS := $(subst $(space),$(comma),$(strip $(DRIVER_TAGS)))

.PHONY: build-ApiFunction build-ProcessFunction build-HeartbeatSweepFunction build-DlqPurgeFunction \
	artifacts-dir build-all lambda image test clean

build-ApiFunction: artifacts-dir
	GOOS=linux GOARCH=$(LAMBDA_GOARCH) CGO_ENABLED=0 $(GO) build -tags $(LAMBDA_TAGS) -trimpath -ldflags='-s -w' -o $(ARTIFACTS_DIR)/bootstrap ./functions/api

build-ProcessFunction: artifacts-dir
	GOOS=linux GOARCH=$(LAMBDA_GOARCH) CGO_ENABLED=0 $(GO) build -tags $(LAMBDA_TAGS) -trimpath -ldflags='-s -w' -o $(ARTIFACTS_DIR)/bootstrap ./functions/process

build-HeartbeatSweepFunction: artifacts-dir
	GOOS=linux GOARCH=$(LAMBDA_GOARCH) CGO_ENABLED=0 $(GO) build -tags $(LAMBDA_TAGS) -trimpath -ldflags='-s -w' -o $(ARTIFACTS_DIR)/bootstrap ./functions/heartbeat-sweep

build-DlqPurgeFunction: artifacts-dir
	GOOS=linux GOARCH=$(LAMBDA_GOARCH) CGO_ENABLED=0 $(GO) build -tags $(LAMBDA_TAGS) -trimpath -ldflags='-s -w' -o $(ARTIFACTS_DIR)/bootstrap ./functions/dlq-purge

artifacts-dir:
	@test -n "$(ARTIFACTS_DIR)" || { echo 'ARTIFACTS_DIR is not set: sam build sets it; by hand run e.g. make build-ApiFunction ARTIFACTS_DIR=/tmp/api' >&2; exit 2; }

build-all:
	@mkdir -p $(BIN)
	$(GO) build -tags '$(HOST_TAGS)' -trimpath -o $(BIN)/ $(addprefix ./functions/,$(FUNCTIONS)) ./cmd/pipeweave

lambda:
	$(MAKE) build-ApiFunction ARTIFACTS_DIR=$(CURDIR)/$(BIN)/lambda/ApiFunction
	$(MAKE) build-ProcessFunction ARTIFACTS_DIR=$(CURDIR)/$(BIN)/lambda/ProcessFunction
	$(MAKE) build-HeartbeatSweepFunction ARTIFACTS_DIR=$(CURDIR)/$(BIN)/lambda/HeartbeatSweepFunction
	$(MAKE) build-DlqPurgeFunction ARTIFACTS_DIR=$(CURDIR)/$(BIN)/lambda/DlqPurgeFunction

image:
	docker build -f deploy/cloudrun/Dockerfile -t pipeweave:dev .

test:
	scripts/test

clean:
	rm -rf $(BIN) .aws-sam
