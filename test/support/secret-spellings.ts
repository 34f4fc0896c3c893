/**
 * How a secret can show up in a log line besides its plain self: percent-encoded (any mix of
 * encoded and plain characters, nested), base64 or base64url. Written independently of the
 * gateway's own decoding (src/auth/credentials.ts), so the audit does not trust the code it checks.
 */

/** Every `%XX` decoded, repeatedly (`%2561` → `%61` → `a`); `+` read as a space first. */
function percentDecodedDeep(text: string): string {
  let out = text
  for (let i = 0; i < 8; i++) {
    const next = out.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) =>
      String.fromCharCode(parseInt(hex, 16))
    )
    if (next === out) return out
    out = next
  }
  return out
}

/** The spellings of `secret` looked for verbatim in a log line. */
function encodedForms(secret: string): string[] {
  const bytes = Buffer.from(secret)
  return [secret, bytes.toString('base64'), bytes.toString('base64url'), bytes.toString('hex')]
}

/** True when `line` holds `secret` in any spelling (plain, percent-encoded in any way, base64). */
export function holdsSecret(line: string, secret: string): boolean {
  if (encodedForms(secret).some((form) => line.includes(form))) return true
  const decoded = percentDecodedDeep(line)
  if (decoded.includes(secret) || decoded.replace(/\+/g, ' ').includes(secret)) return true
  // JSON escapes (`\u005f`) a logger might write.
  const unescaped = decoded.replace(/\\u([0-9a-fA-F]{4})/g, (_, hex: string) =>
    String.fromCharCode(parseInt(hex, 16))
  )
  return unescaped.includes(secret)
}

/** The secrets of `secrets` that appear, in any spelling, in any of `lines`. */
export function secretsIn(lines: readonly string[], secrets: Iterable<string>): string[] {
  return [...secrets].filter((secret) => lines.some((line) => holdsSecret(line, secret)))
}

/** Every single character of `text` replaced by `%XX` (upper or lower-case hex). */
export function percentEncodeAll(text: string, lower = false): string {
  const out = [...Buffer.from(text)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')
  return lower ? out : out.toUpperCase()
}
