/**
 * A failure whose message is written for the person in the chat: safe to show as is.
 * Anything else that escapes a command is a bug and is answered with a reference only.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}
