import { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { contextFor, lazyRequest } from '../src/listener.js'

function incoming(url: string, headers: Record<string, string | string[]>): IncomingMessage {
  const req = new IncomingMessage(new Socket())
  req.method = 'GET'
  req.url = url
  req.headers = headers
  return req
}

describe('the request a Hono Context holds', () => {
  it('answers url and method from Node, and anything else from a real Request built once', () => {
    const req = lazyRequest(
      incoming('/api/assets?size=preview', { 'x-api-key': 'k', accept: ['a', 'b'] })
    )
    expect(req.url).toBe('http://gateway/api/assets?size=preview')
    expect(req.method).toBe('GET')
    expect(req.headers.get('x-api-key')).toBe('k')
    expect(req.headers.get('accept')).toBe('a, b')
    expect(req.headers).toBe(req.headers) // one Request, not one per access
    expect(req.body).toBeNull() // the body stays with the forwarder's stream
  })

  it('gives policies a working c.req (path, headers, query) though the pipeline never reads it', () => {
    const c = contextFor({
      incoming: incoming('/api/people/1/thumbnail?size=x', { 'x-immich-share-key': 's' }),
      outgoing: undefined,
    })
    expect(c.req.path).toBe('/api/people/1/thumbnail')
    expect(c.req.header('x-immich-share-key')).toBe('s')
    expect(c.req.query('size')).toBe('x')
  })
})
