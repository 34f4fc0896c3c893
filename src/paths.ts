import { existsSync, realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The package root (where package.json is), whether running from src/ (tsx) or dist/ (built). */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('cannot find the immich-gateway package root')
    dir = parent
  }
  return dir
}

export const PACKAGE_ROOT = findRoot()

/** A file shipped with the package, e.g. `config/immich-routes.json`. */
export function packageFile(relative: string): string {
  return join(PACKAGE_ROOT, relative)
}

/** True when the module at `moduleUrl` is the process's entry point (also through an npm bin symlink). */
export function isEntryPoint(moduleUrl: string): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(moduleUrl)
  } catch {
    return false
  }
}
