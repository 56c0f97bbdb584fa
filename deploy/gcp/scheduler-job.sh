#!/usr/bin/env bash
# Creates or updates the Cloud Scheduler job that triggers one private PipeWeave Cloud Run
# service (cloudbuild.yaml runs it once per scheduled function; it is safe to run by hand too).
#
#   deploy/gcp/scheduler-job.sh JOB SERVICE SCHEDULE ATTEMPT_DEADLINE
#   e.g. REGION=us-central1 SCHEDULER_SA=pipeweave-scheduler@my-project.iam.gserviceaccount.com \
#        deploy/gcp/scheduler-job.sh pipeweave-process pipeweave-process '* * * * *' 120s
#
# Environment: REGION (of the Cloud Run service), SCHEDULER_SA (the service account whose
# OIDC token the job sends), optional SCHEDULER_REGION (default REGION) and TIME_ZONE
# (default Etc/UTC). The job POSTs an empty body to the service's root URL.
set -euo pipefail

if [[ $# -ne 4 ]]; then
	echo "usage: $0 JOB SERVICE SCHEDULE ATTEMPT_DEADLINE" >&2
	exit 2
fi
job=$1 service=$2 schedule=$3 deadline=$4
: "${REGION:?REGION is not set}"
: "${SCHEDULER_SA:?SCHEDULER_SA is not set}"
scheduler_region=${SCHEDULER_REGION:-$REGION}
time_zone=${TIME_ZONE:-Etc/UTC}

url=$(gcloud run services describe "$service" --region="$REGION" --format='value(status.url)')
if [[ -z $url ]]; then
	echo "$0: Cloud Run service $service in $REGION has no URL (is it deployed?)" >&2
	exit 1
fi

# The services are private (--no-allow-unauthenticated): only this account may invoke them.
gcloud run services add-iam-policy-binding "$service" --region="$REGION" \
	--member="serviceAccount:$SCHEDULER_SA" --role=roles/run.invoker --format=none

verb=create
if gcloud scheduler jobs describe "$job" --location="$scheduler_region" --format=none 2>/dev/null; then
	verb=update
fi
gcloud scheduler jobs "$verb" http "$job" --location="$scheduler_region" \
	--schedule="$schedule" --time-zone="$time_zone" \
	--uri="$url/" --http-method=POST \
	--oidc-service-account-email="$SCHEDULER_SA" --oidc-token-audience="$url" \
	--attempt-deadline="$deadline"
echo "scheduler job $job ($verb): $schedule $time_zone -> POST $url/"
