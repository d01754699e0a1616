import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { isRelightError } from '../../sidecar/core/errors.js'
import { EngineClient, describeConnectError, encodeQuery, engineStatus, resolveEngineAddress } from '../../sidecar/providers/moby/client.js'
import { tempDir } from '../helpers/net.js'

describe('engine-api client', () => {
  it('resolves socket paths and URLs', () => {
    assert.deepEqual(resolveEngineAddress('/var/run/docker.sock'), { origin: 'http://localhost', socketPath: '/var/run/docker.sock', display: '/var/run/docker.sock' })
    assert.equal(resolveEngineAddress('unix:///run/podman/podman.sock').socketPath, '/run/podman/podman.sock')
    assert.equal(resolveEngineAddress('unix:/run/x.sock').socketPath, '/run/x.sock')
    assert.deepEqual(resolveEngineAddress('tcp://127.0.0.1:2375'), { origin: 'http://127.0.0.1:2375', display: 'tcp://127.0.0.1:2375' })
    assert.equal(resolveEngineAddress('http://127.0.0.1:2375/').origin, 'http://127.0.0.1:2375')
  })

  it('explains connection failures in words', () => {
    assert.match(describeConnectError('EACCES', '/var/run/docker.sock', 'docker'), /^permission denied on the docker socket \/var\/run\/docker.sock: run the sidecar as a user in the socket's group/)
    assert.match(describeConnectError('ECONNREFUSED', 'tcp://127.0.0.1:2375', 'podman'), /nothing accepts connections at tcp:\/\/127.0.0.1:2375/)
    assert.match(describeConnectError(undefined, '/x.sock', 'docker'), /^cannot reach the docker engine at \/x.sock$/)
  })

  it('encodes filters as JSON and string arrays as repeated parameters', () => {
    assert.equal(encodeQuery({ changes: ['LABEL a=1', 'LABEL b=2'] }), '?changes=LABEL+a%3D1&changes=LABEL+b%3D2')
    assert.equal(encodeQuery({ all: true, filters: { label: ['a=b'] }, skip: undefined }), `?all=true&filters=${encodeURIComponent('{"label":["a=b"]}')}`)
    assert.equal(encodeQuery({}), '')
  })

  const tmp = tempDir('relight-ec-')
  const socket = join(tmp.dir, 'engine.sock')
  const server = createServer((req, res) => {
    if (req.url === '/v9/_ping') return res.end('OK')
    if (req.url === '/v9/events') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"a":1}\n{"a"')
      res.write(':2}\nnot json\n')
      res.end('{"a":3}\n')
      return
    }
    if (req.url === '/v9/forbidden') return res.writeHead(403).end('{"message":"nope"}')
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"No such container: x"}')
  })
  after(() => {
    server.close()
    tmp.remove()
  })

  it('talks over a unix socket with an API prefix, and reads ndjson streams across chunk boundaries', async () => {
    await new Promise<void>((resolve) => server.listen(socket, resolve))
    const client = new EngineClient({ address: `unix://${socket}`, apiPrefix: '/v9/', name: 'test' })
    try {
      assert.equal((await client.request('GET', '/_ping')).text, 'OK')
      assert.equal((await client.withPrefix('/v9').request('GET', '/_ping')).text, 'OK')
      await assert.rejects(client.withPrefix('').request('GET', '/_ping'), (e) => engineStatus(e) === 404)
      const seen: unknown[] = []
      for await (const ev of await client.stream<{ a: number }>('/events', { signal: AbortSignal.timeout(5000) })) seen.push(ev.a)
      assert.deepEqual(seen, [1, 2, 3])
      await assert.rejects(client.json('GET', '/containers/x/json'), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_FAILED') && engineStatus(e) === 404)
      await assert.rejects(client.request('GET', '/forbidden'), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH'))
    } finally {
      await client.close()
      await client.close()
    }
    await assert.rejects(client.request('GET', '/_ping'), (e) => isRelightError(e, 'RELIGHT_ERR_CLOSED'))
  })

  it('says in words when the socket is missing', async () => {
    const client = new EngineClient({ address: join(tmp.dir, 'missing.sock') })
    try {
      await assert.rejects(client.request('GET', '/_ping'), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE') && e.context.engine?.kind === 'connect' && e.context.engine.errno === 'ENOENT' && /does not exist/.test(e.message))
    } finally {
      await client.close()
    }
  })

  it('rejects at once on an aborted signal', async () => {
    const client = new EngineClient({ address: socket })
    try {
      await assert.rejects(client.request('GET', '/_ping', { signal: AbortSignal.abort() }), (e) => isRelightError(e, 'RELIGHT_ERR_ABORTED'))
    } finally {
      await client.close()
    }
  })
})

describe('shared HTTP error mapping (providers/kit/http-errors.ts)', () => {
  it('maps statuses and connection failures the same for every engine client', async () => {
    const { codeForStatus, codeForConnectError } = await import('../../sidecar/providers/kit/http-errors.js')
    assert.equal(codeForStatus(401), 'RELIGHT_ERR_PROVIDER_AUTH')
    assert.equal(codeForStatus(403), 'RELIGHT_ERR_PROVIDER_AUTH')
    assert.equal(codeForStatus(404), 'RELIGHT_ERR_PROVIDER_FAILED')
    assert.equal(codeForStatus(404, 'RELIGHT_ERR_BACKEND_NOT_FOUND'), 'RELIGHT_ERR_BACKEND_NOT_FOUND')
    for (const s of [502, 503, 504, 429]) assert.equal(codeForStatus(s), 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
    for (const s of [400, 409, 500]) assert.equal(codeForStatus(s), 'RELIGHT_ERR_PROVIDER_FAILED')
    assert.equal(codeForConnectError('EACCES'), 'RELIGHT_ERR_PROVIDER_AUTH')
    assert.equal(codeForConnectError('ECONNREFUSED'), 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
    assert.equal(codeForConnectError(undefined), 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
  })
})
