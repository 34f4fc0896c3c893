/** Small server-rendered SVG bar charts: no script, no charting service, readable by screen readers. */

export interface BarChartProps {
  /** Oldest first. */
  values: (number | undefined)[]
  /** What the chart shows, also its accessible name. */
  title: string
  /** Under the first and the last bar (`60 min ago`, `now`). */
  from: string
  to: string
  unit?: string
  tone?: 'normal' | 'bad'
}

const WIDTH = 360
const HEIGHT = 90
const TOP = 14
const BOTTOM = 16

export function BarChart({ values, title, from, to, unit = '', tone = 'normal' }: BarChartProps) {
  const known = values.filter((v): v is number => v !== undefined)
  const max = Math.max(1, ...known)
  const total = known.reduce((a, b) => a + b, 0)
  const step = WIDTH / Math.max(values.length, 1)
  const plot = HEIGHT - TOP - BOTTOM
  const summary = `${title}: peak ${round(max === 1 && known.every((v) => v === 0) ? 0 : max)}${unit}, total ${round(total)}${unit} over ${values.length} points`
  return (
    <svg
      class='chart'
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      role='img'
      aria-label={summary}
      xmlns='http://www.w3.org/2000/svg'
    >
      <title>{summary}</title>
      <text x='0' y='10'>
        max {round(max)}
        {unit}
      </text>
      <line class='axis' x1='0' x2={WIDTH} y1={HEIGHT - BOTTOM} y2={HEIGHT - BOTTOM} />
      {values.map((v, i) => {
        if (v === undefined || v === 0) return null
        const h = Math.max(1, (v / max) * plot)
        return (
          <rect
            class={tone === 'bad' ? 'bar bad' : 'bar'}
            x={(i * step + step * 0.1).toFixed(1)}
            y={(HEIGHT - BOTTOM - h).toFixed(1)}
            width={(step * 0.8).toFixed(1)}
            height={h.toFixed(1)}
          />
        )
      })}
      <text x='0' y={HEIGHT - 3}>
        {from}
      </text>
      <text x={WIDTH} y={HEIGHT - 3} text-anchor='end'>
        {to}
      </text>
    </svg>
  )
}

function round(n: number): string {
  return n >= 100 ? String(Math.round(n)) : String(Math.round(n * 10) / 10)
}
