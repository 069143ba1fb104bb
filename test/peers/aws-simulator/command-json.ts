/**
 * Run Command's wire shapes (Command, CommandInvocation with its CommandPlugins), built from the
 * records and their derived status; what the request carried (S3, SNS, CloudWatch settings) is
 * echoed back like AWS does.
 */
import { commandView, expiresAt, type InvocationView } from './command-status.js';
import type { CommandRecord, InvocationRecord } from './state.js';
import { pluginStatus, type StepView, stepViews } from './steps.js';
import { epochSeconds } from './wire.js';

/** ListCommandInvocations shows the first 2,500 characters of a plugin's output. */
const LIST_OUTPUT_LIMIT = 2_500;

export function commandJson(command: CommandRecord, now: number) {
  const view = commandView(command, now);
  const echo = command.echo;
  return {
    CommandId: command.commandId,
    DocumentName: command.documentName,
    DocumentVersion: command.documentVersion,
    Comment: command.comment,
    ExpiresAfter: epochSeconds(expiresAt(command)),
    Parameters: command.parameters,
    // A command sent to Targets lists them, and no InstanceIds: TargetCount says how many they matched.
    InstanceIds: command.targets ? [] : command.instanceIds,
    Targets: command.targets ?? [],
    RequestedDateTime: epochSeconds(command.requestedAt),
    Status: view.status,
    StatusDetails: view.statusDetails,
    OutputS3Region: typeof echo.OutputS3Region === 'string' ? echo.OutputS3Region : command.region,
    OutputS3BucketName: typeof echo.OutputS3BucketName === 'string' ? echo.OutputS3BucketName : '',
    OutputS3KeyPrefix: typeof echo.OutputS3KeyPrefix === 'string' ? echo.OutputS3KeyPrefix : '',
    MaxConcurrency: command.maxConcurrency,
    MaxErrors: command.maxErrors,
    TargetCount: view.targetCount,
    CompletedCount: view.completedCount,
    ErrorCount: view.errorCount,
    DeliveryTimedOutCount: view.deliveryTimedOutCount,
    ServiceRole: typeof echo.ServiceRoleArn === 'string' ? echo.ServiceRoleArn : '',
    NotificationConfig: notificationConfig(command),
    CloudWatchOutputConfig: cloudWatchConfig(command),
    TimeoutSeconds: command.timeoutSeconds,
  };
}

export function invocationJson(
  command: CommandRecord,
  invocation: InvocationRecord,
  view: InvocationView,
  details: boolean,
) {
  return {
    CommandId: command.commandId,
    InstanceId: invocation.instanceId,
    InstanceName: '',
    Comment: command.comment,
    DocumentName: command.documentName,
    DocumentVersion: command.documentVersion,
    RequestedDateTime: epochSeconds(command.requestedAt),
    Status: view.status,
    StatusDetails: view.statusDetails,
    TraceOutput: '',
    StandardOutputUrl: '',
    StandardErrorUrl: '',
    CommandPlugins: details ? stepViews(invocation, view).map((step) => pluginJson(command, step)) : [],
    ServiceRole: typeof command.echo.ServiceRoleArn === 'string' ? command.echo.ServiceRoleArn : '',
    NotificationConfig: notificationConfig(command),
    CloudWatchOutputConfig: cloudWatchConfig(command),
  };
}

function pluginJson(command: CommandRecord, step: StepView) {
  const output = step.stderr ? `${step.stdout}\n----------ERROR-------\n${step.stderr}` : step.stdout;
  return {
    Name: step.name,
    Status: pluginStatus(step.status),
    StatusDetails: step.statusDetails,
    ResponseCode: step.responseCode,
    ...(step.startedAt === undefined ? {} : { ResponseStartDateTime: epochSeconds(step.startedAt) }),
    ...(step.endedAt === undefined ? {} : { ResponseFinishDateTime: epochSeconds(step.endedAt) }),
    Output: output.slice(0, LIST_OUTPUT_LIMIT),
    StandardOutputUrl: '',
    StandardErrorUrl: '',
    OutputS3Region: command.region,
    OutputS3BucketName: '',
    OutputS3KeyPrefix: '',
  };
}

function notificationConfig(command: CommandRecord) {
  const given = command.echo.NotificationConfig;
  return given && typeof given === 'object'
    ? given
    : { NotificationArn: '', NotificationEvents: [], NotificationType: '' };
}

export function cloudWatchConfig(command: CommandRecord) {
  const given = command.echo.CloudWatchOutputConfig;
  return given && typeof given === 'object'
    ? given
    : { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false };
}
