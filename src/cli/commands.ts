// Side-effect imports: each module registers its CLI commands with registerCommand().
import './core.js'
import './keys.js'
import './routes-explain.js'
export {}
