import type { FakeSlack, SlackCall } from '../peers/slack-api.js';
import { blockActionsPayload, type SlackDelivery, sendInteraction } from '../peers/slack-signer.js';

/** An admin pressing a button on a fleetbot message in a channel. */
export interface AdminPress {
  userId: string;
  channelId: string;
  /**
   * The message's text as the presser saw it, which Slack sends with the press and fleetbot
   * quotes when it edits the message. Default: its current text in the fake, after every edit;
   * '' sends the press with an empty text.
   */
  messageText?: string;
}

/** The id of the plan a plan message (its chat.postMessage) offers to approve; '' when it offers none. */
export function planIdOf(plan: SlackCall): string {
  return /\/approve ([a-f0-9]{12})/.exec(JSON.stringify(plan.params.blocks))?.[1] ?? '';
}

/**
 * Presses Approve on a plan message, as Slack delivers it: a signed `block_actions` for the
 * message's first button (`cmd:0`, value `/approve <plan id>`). Returns the receiver's answer.
 */
export function pressApprove(
  eventsUrl: string,
  signingSecret: string,
  slack: FakeSlack,
  plan: SlackCall,
  by: AdminPress,
): Promise<SlackDelivery> {
  const ts = String(plan.response.ts);
  const messageText =
    by.messageText ?? slack.channel(by.channelId).messages.find((m) => m.ts === ts)?.text ?? '';
  return sendInteraction(
    eventsUrl,
    signingSecret,
    blockActionsPayload({
      actionId: 'cmd:0',
      value: `/approve ${planIdOf(plan)}`,
      userId: by.userId,
      channelId: by.channelId,
      messageTs: ts,
      messageText,
      responseUrl: slack.responseUrl(),
      buttonText: 'Approve',
    }),
  );
}
