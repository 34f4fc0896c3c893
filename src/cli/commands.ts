// Side-effect imports: each module registers its CLI commands with registerCommand().
export {};
