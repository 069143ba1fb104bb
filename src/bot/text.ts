/** Cuts text to a platform's limit, saying so, instead of letting the API reject the whole message. */
export function fitText(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = '\n… (cut)';
  return text.slice(0, max - marker.length) + marker;
}
