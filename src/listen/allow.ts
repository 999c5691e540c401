// --allow: which peers get an answer. The CIDRs are parsed once into numbers;
// the check per connection parses the peer's address text into a scratch
// array and compares masked words: no allocation, no regular expressions.

/** Parsed --allow list: [net, mask] pairs of u32 for IPv4, 4+4 u32 per IPv6 entry. */
export interface AllowList {
  v4: Uint32Array;
  v6: Uint32Array;
  /** As given, normalised, for logs. */
  cidrs: string[];
}

// Reused by every check: the event loop is single-threaded.
const groups = new Uint16Array(8);

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Dotted quad in text[start, end) as a u32, or -1. */
function parse4(text: string, start: number, end: number): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // no leading zeros (ambiguous octal)
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

/**
 * IPv6 text (RFC 4291 section 2.2: "::" once, an optional dotted IPv4 tail,
 * a "%zone" ignored) into `groups`; false when malformed.
 */
function parse6(text: string, end: number): boolean {
  let g = 0;
  let gap = -1;
  let i = 0;
  if (end >= 2 && text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    let value = 0;
    let j = i;
    while (j < end && j - i < 5) {
      const h = hexValue(text.charCodeAt(j));
      if (h < 0) break;
      value = value * 16 + h;
      j++;
    }
    if (j < end && text.charCodeAt(j) === 46) {
      if (g > 6) return false;
      const v4 = parse4(text, i, end);
      if (v4 < 0) return false;
      groups[g++] = v4 >>> 16;
      groups[g++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (j === i || j - i > 4 || g === 8) return false;
    groups[g++] = value;
    i = j;
    if (i === end) break;
    if (text.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && text.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = g;
      i++;
    } else if (i === end) {
      return false;
    }
  }
  if (gap < 0) return g === 8;
  if (g === 8) return false;
  const tail = g - gap;
  for (let k = 0; k < tail; k++) groups[7 - k] = groups[g - 1 - k]!;
  for (let k = gap; k < 8 - tail; k++) groups[k] = 0;
  return true;
}

/** 4 for an IPv4 address or an IPv4-mapped IPv6 one (then its u32 is returned in ipv4), 6, or 0. */
let ipv4 = 0;
function classify(text: string): 0 | 4 | 6 {
  let end = text.length;
  const zone = text.indexOf("%");
  if (zone >= 0) end = zone;
  if (text.indexOf(":") < 0) {
    const v = parse4(text, 0, end);
    if (v < 0) return 0;
    ipv4 = v;
    return 4;
  }
  if (!parse6(text, end)) return 0;
  // ::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 peer (RFC 4291 section 2.5.5.2).
  if (
    groups[0] === 0 &&
    groups[1] === 0 &&
    groups[2] === 0 &&
    groups[3] === 0 &&
    groups[4] === 0 &&
    groups[5] === 0xffff
  ) {
    ipv4 = ((groups[6]! << 16) | groups[7]!) >>> 0;
    return 4;
  }
  return 6;
}

function word(k: number): number {
  return ((groups[2 * k]! << 16) | groups[2 * k + 1]!) >>> 0;
}

function maskWord(prefix: number): number {
  if (prefix <= 0) return 0;
  if (prefix >= 32) return 0xffffffff;
  return (0xffffffff << (32 - prefix)) >>> 0;
}

/**
 * Parses CIDRs (`10.0.0.0/8`, `::1/128`, a bare address for one host). An
 * IPv4-mapped IPv6 CIDR (`::ffff:10.0.0.0/104`) is kept as the IPv4 CIDR it is.
 * Returns the list, or the first bad entry's text.
 */
export function buildAllowList(texts: readonly string[]): AllowList | { bad: string } {
  const v4: number[] = [];
  const v6: number[] = [];
  const cidrs: string[] = [];
  for (const text of texts) {
    const slash = text.indexOf("/");
    const addr = slash < 0 ? text : text.slice(0, slash);
    const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
    if (addr.includes("%")) return { bad: text };
    const family = classify(addr);
    const isV6Text = addr.includes(":");
    const max = isV6Text ? 128 : 32;
    if (family === 0 || (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText))) return { bad: text };
    let prefix = prefixText === undefined ? max : Number(prefixText);
    if (prefix > max) return { bad: text };
    if (family === 4) {
      if (isV6Text) {
        if (prefix < 96) return { bad: text };
        prefix -= 96;
      }
      const mask = maskWord(prefix);
      v4.push((ipv4 & mask) >>> 0, mask);
      cidrs.push(`${ipv4 >>> 24}.${(ipv4 >>> 16) & 255}.${(ipv4 >>> 8) & 255}.${ipv4 & 255}/${prefix}`);
    } else {
      for (let k = 0; k < 4; k++) v6.push((word(k) & maskWord(prefix - 32 * k)) >>> 0);
      for (let k = 0; k < 4; k++) v6.push(maskWord(prefix - 32 * k));
      cidrs.push(`${addr}/${prefix}`);
    }
  }
  return { v4: new Uint32Array(v4), v6: new Uint32Array(v6), cidrs };
}

/** True when the peer's address text is inside one of the CIDRs. */
export function admits(list: AllowList, address: string): boolean {
  const family = classify(address);
  if (family === 4) {
    const v4 = list.v4;
    for (let i = 0; i < v4.length; i += 2) if ((ipv4 & v4[i + 1]!) >>> 0 === v4[i]) return true;
    return false;
  }
  if (family === 6) {
    const v6 = list.v6;
    for (let i = 0; i < v6.length; i += 8) {
      if (
        (word(0) & v6[i + 4]!) >>> 0 === v6[i] &&
        (word(1) & v6[i + 5]!) >>> 0 === v6[i + 1] &&
        (word(2) & v6[i + 6]!) >>> 0 === v6[i + 2] &&
        (word(3) & v6[i + 7]!) >>> 0 === v6[i + 3]
      )
        return true;
    }
  }
  return false;
}
