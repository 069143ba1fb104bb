/**
 * Just enough XML to edit moto's EC2 responses: elements, raw text, self-closing tags, a prolog.
 * No npm XML parser is a direct dependency here, and moto's output is machine-written and regular
 * (no CDATA, no comments inside the body), so a tokenizer that keeps text raw round-trips it exactly.
 */

export interface XmlElement {
  name: string;
  /** Attributes as written, e.g. ` xmlns="http://ec2.amazonaws.com/doc/2016-11-15"`. */
  attrs: string;
  children: XmlNode[];
  selfClosing: boolean;
}

export type XmlNode = XmlElement | string;

export interface XmlDocument {
  prolog: string;
  root: XmlElement;
}

const TOKEN = /<[^>]*>|[^<]+/g;
const OPEN = /^<([A-Za-z_][\w.:-]*)([^>]*?)(\/?)>$/;

export function parseXml(text: string): XmlDocument {
  let prolog = '';
  let root: XmlElement | undefined;
  const stack: XmlElement[] = [];
  for (const match of text.matchAll(TOKEN)) {
    const token = match[0];
    const parent = stack[stack.length - 1];
    if (token.startsWith('<?') || token.startsWith('<!')) {
      if (!root) prolog += token;
      continue;
    }
    if (token.startsWith('</')) {
      const name = token.slice(2, -1).trim();
      const open = stack.pop();
      if (!open || open.name !== name) throw new Error(`malformed XML: unexpected </${name}>`);
      continue;
    }
    if (token.startsWith('<')) {
      const parts = OPEN.exec(token);
      if (!parts) throw new Error(`malformed XML tag: ${token.slice(0, 80)}`);
      const element: XmlElement = {
        name: parts[1] ?? '',
        attrs: parts[2] ?? '',
        children: [],
        selfClosing: parts[3] === '/',
      };
      if (parent) parent.children.push(element);
      else if (!root) root = element;
      else throw new Error('malformed XML: more than one root element');
      if (!element.selfClosing) stack.push(element);
      continue;
    }
    if (parent) parent.children.push(token);
    else if (!root) prolog += token;
  }
  if (!root || stack.length > 0) throw new Error('malformed XML: unclosed or missing root element');
  return { prolog, root };
}

export function serializeXml(doc: XmlDocument): string {
  return doc.prolog + serializeElement(doc.root);
}

function serializeElement(el: XmlElement): string {
  if (el.selfClosing && el.children.length === 0) return `<${el.name}${el.attrs}/>`;
  const inner = el.children.map((c) => (typeof c === 'string' ? c : serializeElement(c))).join('');
  return `<${el.name}${el.attrs}>${inner}</${el.name}>`;
}

export function childElements(el: XmlElement, name?: string): XmlElement[] {
  return el.children.filter((c): c is XmlElement => typeof c !== 'string' && (!name || c.name === name));
}

/** The `<item>` children of an EC2 list element such as `<instancesSet>`; none when it is absent. */
export function items(list: XmlElement | undefined): XmlElement[] {
  return list ? childElements(list, 'item') : [];
}

export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el ? childElements(el, name)[0] : undefined;
}

/** Follows a path of direct children, e.g. `path(item, 'instanceState', 'name')`. */
export function path(el: XmlElement | undefined, ...names: string[]): XmlElement | undefined {
  let current = el;
  for (const name of names) current = child(current, name);
  return current;
}

export function text(el: XmlElement | undefined): string | undefined {
  if (!el) return undefined;
  return unescapeXml(el.children.filter((c): c is string => typeof c === 'string').join(''));
}

/** Builds an element from a nested description; string leaves are escaped. */
export function element(name: string, content: string | XmlElement[]): XmlElement {
  const children = typeof content === 'string' ? [escapeXml(content)] : content;
  return { name, attrs: '', children, selfClosing: false };
}

/** Replaces (or appends) the direct child called `name`. */
export function replaceChild(parent: XmlElement, replacement: XmlElement): void {
  const index = parent.children.findIndex((c) => typeof c !== 'string' && c.name === replacement.name);
  if (index >= 0) parent.children[index] = replacement;
  else parent.children.push(replacement);
}

export function escapeXml(value: string): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function unescapeXml(value: string): string {
  return value
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}
