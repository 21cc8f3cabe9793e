// How far a delivery's timestamp may be from now: bounds how long a captured delivery can be replayed.
const TOLERANCE_SECONDS = 5 * 60;

class InvalidSignature extends Error {}

// Zapier hands hook headers over as "Http-Webhook-Signature"; a test or another runtime may not.
const header = (headers, name) => {
  for (const [key, value] of Object.entries(headers || {})) {
    const bare = key.toLowerCase().replace(/^http-/, '');
    if (bare === name && value !== undefined && value !== null && String(value).trim() !== '') {
      return String(value).trim();
    }
  }
  throw new InvalidSignature(`the ${name} header is missing`);
};

// Returns if one signature matches, else throws InvalidSignature (whose message holds no secret).
const verify = ({ secret, headers, content, now = Date.now() / 1000 }) => {
  if (typeof secret !== 'string' || !secret.startsWith('whsec_')) {
    throw new InvalidSignature('the subscription has no signing secret');
  }
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const id = header(headers, 'webhook-id');
  const stamp = header(headers, 'webhook-timestamp');
  const given = header(headers, 'webhook-signature');
  if (!/^[0-9]{1,12}$/.test(stamp)) {
    throw new InvalidSignature('the webhook-timestamp header is not a whole number of seconds');
  }
  if (Math.abs(now - Number(stamp)) > TOLERANCE_SECONDS) {
    throw new InvalidSignature('the webhook-timestamp is more than 5 minutes away from now');
  }
  // Over the bytes the service sent: `content` must be them (a body parsed and written again may not be).
  const expected = crypto.createHmac('sha256', key).update(`${id}.${stamp}.`)
    .update(Buffer.from(content || '', 'utf8')).digest();
  let matched = false;
  for (const part of given.split(' ')) {
    if (!part.startsWith('v1,')) continue;
    const candidate = Buffer.from(part.slice(3), 'base64');
    // Every candidate is compared in constant time: timing tells nothing about how close one was.
    const same = candidate.length === expected.length && crypto.timingSafeEqual(candidate, expected);
    matched = same || matched;
  }
  if (!matched) {
    throw new InvalidSignature('no signature matches');
  }
};
