/** A small Dockerfile reader for the tests of the Dockerfile and the compose files. */

export interface Instruction {
  op: string
  args: string
}

/** The Dockerfile's instructions by stage (continuation lines joined, comments dropped). */
export function parseDockerfile(text: string): Instruction[][] {
  const stages: Instruction[][] = []
  const joined = text.replace(/\\\n/g, ' ').split('\n')
  for (const line of joined) {
    const trimmed = line.trim()
    if (!trimmed || trimmed.startsWith('#')) continue
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(trimmed) ?? []
    if (!op) continue
    if (op.toUpperCase() === 'FROM') stages.push([])
    stages.at(-1)?.push({ op: op.toUpperCase(), args: args!.replace(/\s+/g, ' ').trim() })
  }
  return stages
}
