import { startFakeImmich } from './server.js';
const fake = await startFakeImmich({ port: 2397, maxRecordedRequests: 1000, thumbnailSize: Number(process.env.TS ?? 40960) });
setTimeout(() => { void fake.close().then(() => process.exit(0)); }, Number(process.env.LIFE ?? 20000));
