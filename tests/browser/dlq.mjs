// Drives the dead-letter dashboard in headless Chromium for
// tests/dashboard.rs: finds the dead letter DLQ_MESSAGE_ID on the page at
// DLQ_URL (Basic credentials, DLQ_SECRET as the password), checks its
// event and reason, inspects its body, replays it and sees it leave.
// Prints one JSON object of what it saw; exits non-zero on any failed
// expectation. Debian's /usr/bin/chromium (or $CHROMIUM): playwright-core
// never downloads a browser. Install with `bash scripts/browser-deps.sh`.
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env("DLQ_URL");
const secret = env("DLQ_SECRET");
const messageId = env("DLQ_MESSAGE_ID");
const wantEvent = env("DLQ_EVENT");
const wantReason = env("DLQ_REASON");

const seen = { dialogs: [] };
function expect(ok, what) {
  if (!ok) throw new Error(`expected ${what}; saw ${JSON.stringify(seen)}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
  headless: true,
});
let failed = null;
try {
  // Without credentials: the challenge (a page navigation would end in
  // net::ERR_INVALID_AUTH_CREDENTIALS, so ask through the context).
  const anonymous = await browser.newContext();
  const refused = await anonymous.request.get(url);
  seen.unauthenticated_status = refused.status();
  seen.challenge = refused.headers()["www-authenticate"];
  expect(refused.status() === 401, "401 without credentials");
  await anonymous.close();

  const context = await browser.newContext({
    httpCredentials: { username: "ops", password: secret },
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("dialog", (d) => {
    seen.dialogs.push(d.message());
    d.accept();
  });
  page.on("pageerror", (e) => {
    seen.page_errors = (seen.page_errors || []).concat(String(e));
  });
  const res = await page.goto(url);
  expect(res.status() === 200, "200 for the page");
  const row = page.locator(`#entries tbody tr[data-message-id="${messageId}"]`);
  await row.waitFor();
  seen.summary = await page.textContent("#summary");
  seen.row = {
    key: await row.getAttribute("data-key"),
    event: await row.locator("td.event").textContent(),
    reason: await row.locator("td.reason").textContent(),
    attempts: await row.locator("td.attempts").textContent(),
    community: await row.locator("td.community").textContent(),
    time: await row.locator("td.time").textContent(),
  };
  expect(seen.row.event === wantEvent, `event ${wantEvent}`);
  expect(seen.row.reason.includes(wantReason), `a reason with "${wantReason}"`);
  expect(/^\d{4}-\d\d-\d\dT/.test(seen.row.time), "an ISO time");

  // Inspect: the detail pane shows the body as sent.
  await row.locator("button.inspect").click();
  await page.locator("#detail:not([hidden])").waitFor();
  await page.waitForFunction(
    (key) => document.getElementById("detail").dataset.key === key,
    seen.row.key,
  );
  const body = await page.textContent("#detail-body");
  seen.inspected = JSON.parse(body);
  expect(seen.inspected.t === wantEvent, "the inspected body's t");
  const headers = JSON.parse(await page.textContent("#detail-headers"));
  expect(headers["x-arrakis-reason"] === seen.row.reason, "the reason among the headers");

  // Replay (the page asks first), then the row is gone after a refresh.
  await row.locator("button.replay").click();
  await page.waitForFunction(() =>
    document.getElementById("status").textContent.startsWith("Replayed"),
  );
  seen.status = await page.textContent("#status");
  await page.click("#refresh");
  await page.waitForFunction(
    (id) => !document.querySelector(`#entries tbody tr[data-message-id="${id}"]`),
    messageId,
  );
  await page.waitForFunction(() =>
    document.getElementById("summary").textContent.includes(" in the queue"),
  );
  seen.after = {
    summary: await page.textContent("#summary"),
    rows: await page.locator("#entries tbody tr").count(),
    error: await page.textContent("#error"),
  };
  expect(seen.after.error === "", "no error on the page");
  expect(seen.dialogs.length === 1, "one confirmation");
  expect(!seen.page_errors, "no script errors");
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  seen.error = String(failed && failed.message ? failed.message : failed);
  console.log(JSON.stringify(seen));
  process.exit(1);
}
console.log(JSON.stringify(seen));
