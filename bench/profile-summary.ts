// Summarizes a V8 .cpuprofile (from `node --cpu-prof`, e.g. `bench/run.ts --profile`): self time
// by function, inclusive time by function, and self time by package / source file.
//
//   npx tsx bench/profile-summary.ts bench/results/profiles/<file>.cpuprofile [--top 30] [--grep 'src/|prom-client']
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' }, grep: { type: 'string' } },
})
const TOP = Number(args.top)

/** Where a frame lives: an npm package, one of our files, a node internal module, or a V8 pseudo-frame. */
function area(frame: CallFrame): string {
  const url = frame.url
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg) return pkg[1]!
  if (url.startsWith('node:'))
    return url.replace(/^node:(internal\/)?/, 'node:').replace(/\/.*$/, '')
  const ours = /\/(dist\/)?((?:src|policies)\/.*)$/.exec(url)
  if (ours) return ours[2]!.replace(/\.js$/, '')
  return url
}

function label(frame: CallFrame): string {
  const where = frame.url ? `${area(frame)}:${frame.lineNumber + 1}` : ''
  return `${frame.functionName || '(anonymous)'} ${where}`.trim()
}

function summarize(file: string): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)

  const selfByFn = new Map<string, number>()
  const selfByArea = new Map<string, number>()
  const inclusiveByFn = new Map<string, number>()
  const inclusiveByArea = new Map<string, number>()
  let total = 0
  let idle = 0
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0
    const node = byId.get(id)!
    if (node.callFrame.functionName === '(idle)') {
      idle += dt
      return
    }
    total += dt
    const fn = label(node.callFrame)
    selfByFn.set(fn, (selfByFn.get(fn) ?? 0) + dt)
    const a = area(node.callFrame)
    selfByArea.set(a, (selfByArea.get(a) ?? 0) + dt)
    // Inclusive: every distinct frame on this sample's stack.
    const seen = new Set<string>()
    const seenArea = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur)!.callFrame
      const l = label(frame)
      if (!seen.has(l)) {
        seen.add(l)
        inclusiveByFn.set(l, (inclusiveByFn.get(l) ?? 0) + dt)
      }
      const a = area(frame)
      if (!seenArea.has(a)) {
        seenArea.add(a)
        inclusiveByArea.set(a, (inclusiveByArea.get(a) ?? 0) + dt)
      }
    }
  })

  const show = (title: string, m: Map<string, number>, n: number) => {
    process.stdout.write(`\n${title}\n`)
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) {
      process.stdout.write(`  ${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}\n`)
    }
  }
  process.stdout.write(
    `${file}\nbusy ${(total / 1e6).toFixed(1)} s, idle ${(idle / 1e6).toFixed(1)} s (percentages are of busy time)\n`
  )
  show('self time by package / file', selfByArea, TOP)
  show('self time by function', selfByFn, TOP)
  show(
    'inclusive time by package / file (time with a frame of it on the stack)',
    inclusiveByArea,
    TOP
  )
  show('inclusive time by function', inclusiveByFn, TOP)
  if (args.grep) {
    const re = new RegExp(args.grep)
    show(
      `inclusive time of functions matching /${args.grep}/`,
      new Map([...inclusiveByFn].filter(([k]) => re.test(k))),
      1000
    )
  }
}

for (const file of positionals) summarize(file)
