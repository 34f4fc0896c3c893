// Requests driven through a Node request listener in process, with neither a kernel socket nor a
// load generator: what is measured is the JavaScript the listener runs.
import { IncomingMessage, ServerResponse } from 'node:http'
import { type Socket } from 'node:net'
import { Duplex } from 'node:stream'

/** A socket that takes whatever is written and drops it. */
function nullSocket(): Socket {
  // A high-water mark no answer reaches: a write never waits for a drain Node's server would relay.
  const d = new Duplex({
    writableHighWaterMark: 1 << 30,
    read() {},
    write(_chunk, _enc, done) {
      done()
    },
  })
  Object.assign(d, { remoteAddress: '127.0.0.1', encrypted: false })
  return d as unknown as Socket
}

/** One GET handed to `dispatch` as Node's server would; resolves with the status once the answer is sent. */
export function syntheticGet(
  dispatch: (req: IncomingMessage, res: ServerResponse) => void,
  path: string,
  headers: Record<string, string>
): Promise<number> {
  const socket = nullSocket()
  const req = new IncomingMessage(socket)
  req.method = 'GET'
  req.url = path
  req.httpVersionMajor = 1
  req.httpVersionMinor = 1
  req.httpVersion = '1.1'
  req.headers = headers
  req.rawHeaders = Object.entries(headers).flat()
  req.complete = true
  req.push(null)
  const res = new ServerResponse(req)
  res.assignSocket(socket)
  return new Promise((resolve) => {
    res.on('finish', () => resolve(res.statusCode))
    dispatch(req, res)
  })
}
