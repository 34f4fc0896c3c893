// Side-effect imports: each module registers its CLI commands with registerCommand().
import './keys.js'
import './routes-explain.js'
export {}
