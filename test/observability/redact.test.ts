import { describe, expect, it } from 'vitest'
import { redactText, redactUrl } from '../../src/observability/logging.js'

const K = 'igw_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ'

describe('redactUrl: what the access log prints', () => {
  it.each([
    // Untouched: nothing a credential could be.
    [
      '/api/assets/a/thumbnail?size=preview&c=VGhp%2Bk%3D',
      '/api/assets/a/thumbnail?size=preview&c=VGhp%2Bk%3D',
    ],
    ['/a?keyword=1&monkey=2&key_id=3&keys=4', '/a?keyword=1&monkey=2&key_id=3&keys=4'],
    ['/a?t=2024-01-01T00%3A00%3A00.000Z', '/a?t=2024-01-01T00%3A00%3A00.000Z'],
    // What authentication reads as a credential.
    [`/a?apiKey=${K}`, '/a?apiKey=[REDACTED]'],
    [`/a?api%4Bey=${K}&size=1`, '/a?api%4Bey=[REDACTED]&size=1'],
    [`/a?%61piKey=${K}`, '/a?%61piKey=[REDACTED]'],
    [`/a?x%2Dapi%2Dkey=${K}`, '/a?x%2Dapi%2Dkey=[REDACTED]'],
    [`/a?apiKey[]=${K}&apiKey%5B%5D=${K}`, '/a?apiKey[]=[REDACTED]&apiKey%5B%5D=[REDACTED]'],
    [`/a?size=1;APIKEY=${K};x=2`, '/a?size=1;APIKEY=[REDACTED];x=2'],
    [`/a?apiKey%3D${K}&size=1`, '/a?[REDACTED]&size=1'],
    [
      '/a?key=s&slug=t&sessionKey=u&token=v&password=w',
      '/a?key=[REDACTED]&slug=[REDACTED]&sessionKey=[REDACTED]&token=[REDACTED]&password=[REDACTED]',
    ],
    // Beyond it: inside another value, encoded twice, junk before `=`, in the path.
    [`/a?q=apiKey%3D${K}`, '/a?q=[REDACTED]'],
    ['/a?q=x?apiKey=n', '/a?q=[REDACTED]'],
    ['/a?api%254Bey=n', '/a?api%254Bey=[REDACTED]'],
    ['/a?apiKey%00=n', '/a?apiKey%00=[REDACTED]'],
    ['/a?apiKey=ab/cd&x=1', '/a?apiKey=[REDACTED]&x=1'],
    [`/api/assets/${K}/thumbnail?size=1`, '/api/assets/[REDACTED]?size=1'],
    ['/api/assets;sessionKey=ab/cd/thumbnail', '/api/assets;sessionKey=[REDACTED]'],
    [`/photos/${K.replace('igw_', 'igw%5F')}`, '/photos/[REDACTED]'],
  ])('%s', (url, logged) => {
    expect(redactUrl(url)).toBe(logged)
  })

  it('redactText: a URL inside an error message', () => {
    expect(redactText(`request to "http://immich/api/x?apiKey=${K}" failed`)).toBe(
      'request to "http://immich/api/x?apiKey=[REDACTED]" failed'
    )
  })
})
