const CREDENTIALS = {
  login: process.env.ALLMYSMS_LOGIN || 'demo',
  apiKey: process.env.ALLMYSMS_API_KEY || 'demo-api-key',
};

const until = async (check, what, seconds = 15) => {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

// The sandbox only: a recipient answering the last SMS sent to +33611111111.
const simulateReply = async (message) => {
  const response = await fetch(`${process.env.ALLMYSMS_CONNECTOR_URL}/v1/sandbox/replies`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json',
               Authorization: 'Basic ' + Buffer.from(`${CREDENTIALS.login}:${CREDENTIALS.apiKey}`).toString('base64') },
    body: JSON.stringify({ phone_number: '+33611111111', message }),
  });
  return response.status === 201;
};

// The platform's hook URL, played by a server on 127.0.0.1 that keeps what it receives.
const startReceiver = async (received) => {
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      received.push({ path: request.url, headers: request.headers, body: JSON.parse(body) });
      response.writeHead(200).end('ok');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
};
