// The subsecond load test: open-loop arrivals of a labelled traffic mix against a router's
// Generate stream, with the SLOs as k6 thresholds (a breach fails the run, exit code 99).
// Every option is an environment variable; loadtest/README.md lists them. loadtest/run.py sets
// them for you (local stack, faults, report, PNG); plain `k6 run loadtest/script.js` works too.
import grpc from 'k6/net/grpc';
import { Counter, Rate, Trend } from 'k6/metrics';

const env = (name, fallback) => (__ENV[name] === undefined || __ENV[name] === '' ? fallback : __ENV[name]);
const num = (name, fallback) => Number(env(name, fallback));

const TARGET = env('TARGET', '127.0.0.1:50051');
const RATE = num('RATE', 5); // arrivals per second at the scenario's base
const DURATION = num('DURATION', 30); // seconds
const SCENARIO = env('SCENARIO', 'steady');
const SPIKE = num('SPIKE_FACTOR', 4);
const MAX_TOKENS = num('MAX_TOKENS', 0); // 0: the tier's default (only an answer that ends by itself is stored)
const DEADLINE = env('DEADLINE', '30s');
const WARM_TRIES = num('WARM_TRIES', 5); // calls per warm-up prompt before it is given up
const WARM_RETRY_MS = num('WARM_RETRY_MS', 3000);
const DATA = JSON.parse(open(env('DATA', './data/mix.json')));
const MIX = parseMix(env('MIX', 'repeats=0.35,paraphrases=0.2,near_misses=0.2,static=0.15,fresh=0.1'));
// Similarity of a prompt to its own entry: a near-miss found at (about) 1.0 is its own stored
// answer (the vector tier answering while the exact tier is down), not its neighbour's, or a prompt
// that is one text with its neighbour once normalised (the cache embeds prompts normalised, and the
// guard serves such a pair as one question): never a near-miss of the data set.
const SELF_SIMILARITY = 0.999;

const PROTO_DIR = env('PROTO_DIR', '../proto');
const client = new grpc.Client();
client.load([PROTO_DIR], 'subsecond/v1/router.proto');
const TLS = env('TLS', 'false') === 'true';
const connectParams = { plaintext: !TLS, timeout: '10s' };
if (TLS) {
  const tls = {};
  if (env('TLS_CA', '')) tls.cacerts = [open(env('TLS_CA'))];
  if (env('TLS_CERT', '')) {
    tls.cert = open(env('TLS_CERT'));
    tls.key = open(env('TLS_KEY'));
  }
  connectParams.tls = tls;
  if (env('TLS_AUTHORITY', '')) connectParams.authority = env('TLS_AUTHORITY');
}
const METADATA = env('API_KEY', '') ? { 'x-api-key': env('API_KEY') } : {};

const answerLatency = new Trend('answer_latency', true);
const firstChunkLatency = new Trend('first_chunk_latency', true);
const errors = new Rate('request_errors');
const wrongAnswers = new Counter('wrong_answers');
const expectedHits = new Rate('expected_hits');

function parseMix(text) {
  const shares = {};
  for (const part of text.split(',')) {
    const [name, share] = part.split('=');
    if (!['repeats', 'paraphrases', 'near_misses', 'static', 'fresh'].includes(name.trim())) {
      throw new Error(`MIX: unknown class "${name}"`);
    }
    shares[name.trim()] = Number(share);
  }
  const total = Object.values(shares).reduce((a, b) => a + b, 0);
  if (!(total > 0)) throw new Error('MIX: the shares add up to nothing');
  return Object.entries(shares).map(([name, share]) => [name, share / total]);
}

function stages() {
  // Open-loop: arrivals follow the schedule whatever the latency (k6 starts VUs to keep up).
  const base = { timeUnit: '1s', preAllocatedVUs: num('VUS', 20), maxVUs: num('MAX_VUS', 200) };
  const s = (seconds) => `${Math.max(1, Math.round(seconds))}s`;
  switch (SCENARIO) {
    case 'steady':
      return { ...base, executor: 'constant-arrival-rate', rate: RATE, duration: s(DURATION) };
    case 'step': // the base rate, then twice it
      return {
        ...base, executor: 'ramping-arrival-rate', startRate: RATE,
        stages: [{ target: RATE, duration: s(DURATION / 2) }, { target: 2 * RATE, duration: '1s' },
          { target: 2 * RATE, duration: s(DURATION / 2) }],
      };
    case 'ramp': // from one arrival a second up to twice the base rate
      return {
        ...base, executor: 'ramping-arrival-rate', startRate: 1,
        stages: [{ target: 2 * RATE, duration: s(DURATION) }],
      };
    case 'spike': // the base rate, SPIKE_FACTOR times it for a sixth of the run, back to the base
      return {
        ...base, executor: 'ramping-arrival-rate', startRate: RATE,
        stages: [{ target: RATE, duration: s(DURATION / 3) }, { target: SPIKE * RATE, duration: '1s' },
          { target: SPIKE * RATE, duration: s(DURATION / 6) }, { target: RATE, duration: '1s' },
          { target: RATE, duration: s(DURATION / 3) }],
      };
    default:
      throw new Error(`SCENARIO: unknown "${SCENARIO}" (steady, step, ramp, spike)`);
  }
}

const p95 = (name, fallback) => [`p(95)<${num(name, fallback)}`];
export const options = {
  scenarios: { [SCENARIO]: stages() },
  setupTimeout: env('SETUP_TIMEOUT', '300s'),
  // The SLOs. A submetric with no samples (no static traffic in the mix, say) has nothing to breach.
  thresholds: {
    'answer_latency{served_by:exact}': p95('SLO_EXACT_P95_MS', 50),
    'answer_latency{served_by:semantic}': p95('SLO_SEMANTIC_P95_MS', 200),
    'answer_latency{served_by:static}': p95('SLO_STATIC_P95_MS', 50),
    'answer_latency{served_by:generated}': p95('SLO_GENERATED_P95_MS', 8000),
    first_chunk_latency: p95('SLO_FIRST_CHUNK_P95_MS', 3000),
    request_errors: [`rate<${num('SLO_ERROR_RATE', 0.01)}`],
    wrong_answers: ['count==0'],
  },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

const SERVED_BY = {
  SERVED_BY_EXACT: 'exact', SERVED_BY_SEMANTIC: 'semantic', SERVED_BY_GENERATED: 'generated',
  SERVED_BY_STATIC: 'static',
};

function request(prompt, task) {
  return { prompt, task: task || '', maxTokens: MAX_TOKENS };
}

// Sends one Generate and calls back with {ok, servedBy, similarity, error} when the stream ends;
// `timed` records the latencies (the warm-up in setup does not).
function generate(req, tags, timed, done) {
  const started = Date.now();
  let first = null;
  let completion = null;
  let failed = null;
  const stream = new grpc.Stream(client, 'subsecond.v1.Router/Generate', {
    metadata: METADATA, timeout: DEADLINE, tags,
  });
  stream.on('data', (message) => {
    if (first === null) first = Date.now();
    if (message.done) completion = message.done;
  });
  stream.on('error', (error) => {
    failed = error;
  });
  stream.on('end', () => {
    const servedBy = completion ? SERVED_BY[completion.servedBy] || 'unknown' : '';
    const ok = failed === null && completion !== null;
    if (timed) {
      errors.add(!ok, { ...tags, code: failed ? String(failed.code) : 'OK' });
      if (ok) {
        answerLatency.add(Date.now() - started, { ...tags, served_by: servedBy });
        firstChunkLatency.add(first - started, { ...tags, served_by: servedBy });
      }
    }
    const error = failed ? `${failed.code}: ${failed.message}` : completion ? '' : 'no final message';
    done({ ok, servedBy, similarity: completion ? completion.similarity || 0 : 0, error });
  });
  stream.write(req);
  stream.end();
}

let connected = false;
function connect() {
  if (!connected) {
    client.connect(TARGET, connectParams);
    connected = true;
  }
}

// Warms one prompt, trying again after a failure: a stack that has just started (a cache still
// loading, a router refusing generations while its cache is bypassed) fails the first calls, and a
// prompt left unwarmed turns the run's exact and semantic hits into generations.
function warm(prompt, triesLeft) {
  generate(request(prompt), { phase: 'warm' }, false, (r) => {
    if (r.ok) return;
    if (triesLeft > 1) setTimeout(() => warm(prompt, triesLeft - 1), WARM_RETRY_MS);
    else console.warn(`warm-up failed for: ${prompt} (${r.error})`);
  });
}

// Warms what the run expects to find: the repeats, the paraphrases' anchors and the near-misses'
// anchors, each answered (and stored) once before the clock starts.
export function setup() {
  connect();
  const prompts = [...DATA.repeats, ...DATA.paraphrases.map((p) => p.anchor), ...DATA.near_misses.map((p) => p.anchor)];
  for (const prompt of prompts) warm(prompt, WARM_TRIES);
}

function pick(items) {
  return items[Math.floor(Math.random() * items.length)];
}

function choose() {
  let roll = Math.random();
  for (const [name, share] of MIX) {
    roll -= share;
    if (roll < 0) return name;
  }
  return MIX[MIX.length - 1][0];
}

export default function () {
  connect();
  const kind = choose();
  const tags = { class: kind };
  if (kind === 'repeats') {
    generate(request(pick(DATA.repeats)), tags, true, (r) => r.ok && expectedHits.add(r.servedBy === 'exact', tags));
  } else if (kind === 'paraphrases') {
    generate(request(pick(DATA.paraphrases).prompt), tags, true, (r) => r.ok && expectedHits.add(r.servedBy === 'semantic', tags));
  } else if (kind === 'near_misses') {
    // Served from the cache under another prompt's entry: somebody else's answer. Its own entry
    // (an exact hit, once it was generated and stored) is a right answer.
    generate(request(pick(DATA.near_misses).prompt), tags, true, (r) => {
      if (r.servedBy === 'semantic' && r.similarity < SELF_SIMILARITY) wrongAnswers.add(1, tags);
    });
  } else if (kind === 'static') {
    const item = pick(DATA.static);
    generate(request(item.prompt, item.task), tags, true, (r) => r.ok && expectedHits.add(r.servedBy === 'static', tags));
  } else {
    const tag = `${__VU}-${__ITER}-${Date.now() % 100000}`;
    const prompt = DATA.fresh_template.replace('{tag}', tag).replace('{n}', String(__ITER + 17));
    generate(request(prompt), tags, true, () => {});
  }
}
