const UNITS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

/** `90d`, `12h`, `30m`, `45s`, `2w` (and a bare `0`) → milliseconds. Throws naming the value on anything else. */
export function parseDuration(text: string): number {
  if (text.trim() === '0') return 0
  const match = /^(\d{1,6})([smhdw])$/.exec(text.trim())
  if (!match)
    throw new Error(
      `"${text}" is not a duration (expected a number and a unit s/m/h/d/w, e.g. 90d)`
    )
  return Number(match[1]) * UNITS[match[2]!]!
}
