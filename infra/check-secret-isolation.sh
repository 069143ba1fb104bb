#!/bin/bash
# check-secret-isolation: run once after deploying fleetbot.yaml, against one real fleetbot instance.
# It has the instance itself, with its own role, read two SecureString parameters: its own user's
# (must be allowed) and another user's (must be denied). Only a real account can show this: IAM
# evaluates `ssm:resourceTag/InstanceArn == ${ec2:SourceInstanceARN}` only when SSM receives the
# instance ARN with the request, which no emulator or offline policy simulator can demonstrate.
#
#   check-secret-isolation.sh --region REGION --instance INSTANCE_ID --own NAME --other NAME [--dry-run]
#       From an operator's workstation: aws CLI v2, the Session Manager plugin, and credentials that
#       may read the instance and the parameters' tags and start a session with
#       AWS-StartInteractiveCommand on the instance. Checks the bindings first (NAME's InstanceArn tag
#       must be this instance, the other's must not), then runs the two reads on the instance through
#       Session Manager. --dry-run prints the session command instead of running it.
#   check-secret-isolation.sh --on-instance --region REGION --own NAME --other NAME
#       On the instance itself (inside `aws ssm start-session --target INSTANCE_ID`): just the reads.
#
# NAME is a parameter name such as /fleetbot/users/123456789/openai-api-key. Values are never
# printed: each read asks only for the parameter's name back. Exit status: 0 pass, 1 fail,
# 2 usage, 3 inconclusive (a precondition or an unexpected error; nothing was proven either way).
# AWS-RunShellScript is not used: the fleet's policies keep it off the instances on purpose.
set -euo pipefail

usage() {
  sed -n '8,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# The reads, as the instance's role makes them. It travels to the instance as its own text (declare -f),
# so it may use nothing else from this file. Prints one line per read and a RESULT line.
check_reads() {
  local region="$1" own="$2" other="$3" own_result other_result
  read_one() {
    local name="$1" err code
    # Only the name comes back: the value never reaches this terminal or the session log.
    if err="$(aws ssm get-parameter --region "$region" --name "$name" --with-decryption \
      --query Parameter.Name --output text 2>&1 >/dev/null)"; then
      printf 'allowed'
      return 0
    fi
    code=''
    if [[ "$err" =~ An\ error\ occurred\ \(([A-Za-z0-9.]+)\) ]]; then code="${BASH_REMATCH[1]}"; fi
    case "$code" in
      AccessDenied*) printf 'denied (%s)' "$code" ;;
      '') printf 'error (%s)' "$(printf '%s' "$err" | tr -s '\r\n' '  ' | cut -c 1-160)" ;;
      *) printf 'error (%s)' "$code" ;;
    esac
  }
  own_result="$(read_one "$own")"
  other_result="$(read_one "$other")"
  printf 'own user:     %s: %s\n' "$own" "$own_result"
  printf 'another user: %s: %s\n' "$other" "$other_result"
  if [[ "$own_result" == allowed && "$other_result" == denied* ]]; then
    printf 'RESULT: PASS: ec2:SourceInstanceARN reached SSM and matched only its own parameter tag\n'
    return 0
  fi
  if [[ "$other_result" == allowed ]]; then
    printf 'RESULT: FAIL: %s\n' "this instance read another user's parameter"
    return 1
  fi
  if [[ "$own_result" == denied* ]]; then
    printf 'RESULT: FAIL: this instance may not read its own parameter (is ec2:SourceInstanceARN reaching SSM?)\n'
    return 1
  fi
  printf 'RESULT: INCONCLUSIVE: a read failed for another reason\n'
  return 3
}

on_instance=0
dry_run=0
region=''
instance=''
own=''
other=''
while [[ $# -gt 0 ]]; do
  case "$1" in
    --on-instance) on_instance=1 ;;
    --dry-run) dry_run=1 ;;
    --region | --instance | --own | --other)
      [[ $# -ge 2 ]] || usage
      case "$1" in
        --region) region="$2" ;;
        --instance) instance="$2" ;;
        --own) own="$2" ;;
        --other) other="$2" ;;
      esac
      shift
      ;;
    *) usage ;;
  esac
  shift
done

# Everything below ends up in a command line on the instance: only these shapes get that far.
readonly name_pattern='^/[A-Za-z0-9_.-]+/users/[0-9]{1,16}/[a-z0-9-]{1,64}$'
[[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || {
  echo 'check-secret-isolation: --region must be a region such as eu-west-1' >&2
  usage
}
[[ "$own" =~ $name_pattern && "$other" =~ $name_pattern ]] || {
  echo 'check-secret-isolation: --own and --other must be parameter names like /fleetbot/users/123/openai-api-key' >&2
  usage
}
[[ "$own" != "$other" && "${own%/*}" != "${other%/*}" ]] || {
  echo "check-secret-isolation: --other must be another user's parameter" >&2
  usage
}
export AWS_PAGER=''

if [[ "$on_instance" -eq 1 ]]; then
  status=0
  check_reads "$region" "$own" "$other" || status=$?
  exit "$status"
fi

[[ "$instance" =~ ^i-[0-9a-f]{8,17}$ ]] || {
  echo 'check-secret-isolation: --instance must be an instance id (i-...)' >&2
  usage
}

inconclusive() {
  printf 'RESULT: INCONCLUSIVE: %s\n' "$1"
  exit 3
}

# The bindings the service made, read with the operator's credentials: without them the reads
# below would not test what they claim to.
read -r owner state < <(aws ec2 describe-instances --region "$region" --instance-ids "$instance" \
  --query 'Reservations[0].[OwnerId,Instances[0].State.Name]' --output text) ||
  inconclusive "could not describe $instance"
[[ "$state" == running ]] || inconclusive "$instance is $state, not running"
partition=aws
case "$region" in
  cn-*) partition=aws-cn ;;
  us-gov-*) partition=aws-us-gov ;;
esac
arn="arn:$partition:ec2:$region:$owner:instance/$instance"
tag_of() {
  aws ssm list-tags-for-resource --region "$region" --resource-type Parameter --resource-id "$1" \
    --query "TagList[?Key=='InstanceArn'].Value | [0]" --output text
}
own_tag="$(tag_of "$own")" || inconclusive "could not read the tags of $own"
other_tag="$(tag_of "$other")" || inconclusive "could not read the tags of $other"
[[ "$own_tag" == "$arn" ]] ||
  inconclusive "$own is tagged InstanceArn=$own_tag, not $arn: bind it first (/provision does)"
[[ "$other_tag" != "$arn" ]] || inconclusive "$other is bound to $instance too: pick another user's parameter"
printf 'bindings: %s -> %s; %s -> %s\n' "$own" "$arn" "$other" "$other_tag"

# The function's own text, base64 so that no quoting survives into the session's shell; the
# arguments were validated above.
# shellcheck disable=SC2016 # "$@" is expanded by the instance's shell, not this one
payload="$(printf '%s\ncheck_reads "$@"\n' "$(declare -f check_reads)" | base64 | tr -d '\n')"
parameters="{\"command\":[\"echo $payload | base64 -d | bash -s $region $own $other\"]}"
session=(aws ssm start-session --region "$region" --target "$instance"
  --document-name AWS-StartInteractiveCommand --parameters "$parameters")
if [[ "$dry_run" -eq 1 ]]; then
  # Ready to paste: the JSON holds no single quote (every part of it was validated or is base64).
  printf "%s --parameters '%s'\n" "${session[*]:0:9}" "$parameters"
  exit 0
fi
# A session runs on a terminal: its lines end in CR LF, and its exit status is not the command's.
output="$("${session[@]}" 2>&1 | tr -d '\r')" || true
printf '%s\n' "$output" | grep -E '^(own user|another user|RESULT):' || true
case "$output" in
  *'RESULT: PASS'*) exit 0 ;;
  *'RESULT: FAIL'*) exit 1 ;;
  *'RESULT: '*) exit 3 ;;
  *) inconclusive "the session printed no result: $(printf '%s' "$output" | tail -n 3 | tr -s '\r\n' '  ')" ;;
esac
