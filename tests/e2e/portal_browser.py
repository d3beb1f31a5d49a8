"""A student's laptop's browser, run by tests/e2e/test_portal.py inside the laptop's network namespace.

Not a test file: `python portal_browser.py PLAN.json` does what the plan says in Debian's Chromium (Playwright)
and prints one JSON object of what it saw. Chromium trusts the class CA through its NSS database in $HOME
(the caller makes it with certutil), nothing else.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time

from playwright.sync_api import expect, sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def type_in(page, machine: str, line: str) -> None:  # noqa: ANN001
    box = page.locator(f'.terminal[data-machine="{machine}"]')
    expect(box).to_have_attribute("data-connected", "yes", timeout=60_000)
    box.click()
    page.keyboard.type(line + "\n", delay=5)


def screen(page, selector: str) -> str:  # noqa: ANN001
    return page.locator(f"{selector} .xterm-rows").inner_text()


def hint_levels(page) -> list[str]:  # noqa: ANN001
    return page.locator("li.step.current li.hint").evaluate_all("items => items.map(item => item.dataset.level)")


def check(page) -> None:  # noqa: ANN001
    note = page.locator("#note")
    page.locator("#check").click()
    expect(note).to_have_text("checked", timeout=180_000)


def main(plan_path: str) -> None:
    plan = json.loads(open(plan_path).read())
    base = plan["base"]
    seen: dict = {"errors": [], "elsewhere": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)

        def guard(context) -> None:  # noqa: ANN001
            def only_ours(route) -> None:  # noqa: ANN001
                url = route.request.url
                if url.startswith(base) or url.startswith("wss://" + base.split("://", 1)[1]) \
                        or url.startswith(plan["other_site"]):
                    route.continue_()
                else:
                    seen["elsewhere"].append(url)
                    route.abort()

            context.route("**/*", only_ours)

        # 1. Without the link: nothing.
        stranger = browser.new_context()
        guard(stranger)
        page = stranger.new_page()
        first = page.goto(base + "/")
        seen["stranger_status"] = first.status
        seen["stranger_text"] = page.content()
        me = page.goto(base + "/api/me")
        seen["stranger_api"] = me.status
        seen["stranger_api_text"] = page.content()
        stranger.close()

        # 2. The student's link: their page, their terminals; the `hosts` step typed in and checked.
        context = browser.new_context()
        guard(context)
        page = context.new_page()
        page.on("pageerror", lambda error: seen["errors"].append(str(error)))
        page.on("console", lambda message: message.type == "error" and seen["errors"].append(message.text))
        page.goto(plan["link"])
        page.wait_for_url(base + "/", timeout=30_000)
        expect(page.locator("h1")).to_contain_text(plan["student"])
        seen["address_bar"] = page.url
        for machine in ("registry", "client"):
            type_in(page, machine, plan["hosts_command"])
        time.sleep(2)
        seen["client_screen"] = screen(page, '.terminal[data-machine="client"]')
        check(page)
        hosts = page.locator('li[data-step="hosts"]')
        seen["hosts_status"] = hosts.get_attribute("data-status")
        seen["hint_levels"] = [hint_levels(page)]

        # 3. A cross-site POST from another site's page, in the same browser, with the student's session open.
        statuses: list[int] = []
        page2 = context.new_page()
        page2.on("response", lambda response: statuses.append(response.status)
                 if response.url.startswith(base + "/api/check") else None)
        page2.goto(plan["other_site"] + "/attack.html")
        page2.wait_for_timeout(3000)
        seen["cross_site_statuses"] = statuses
        page2.close()

        # 4. Its current step failed that check; two more failed checks: its three hints, one more each time.
        for _ in range(2):
            time.sleep(5.5)  # the per-student rate limit
            check(page)
            seen["hint_levels"].append(hint_levels(page))
        current = page.locator("li.step.current")
        seen["current_step"] = current.get_attribute("data-step")
        seen["hints"] = current.locator("li.hint").evaluate_all(
            "items => items.map(item => [item.dataset.level, item.querySelector('strong').textContent])")
        context.close()

        # 5. The instructor: the grid, time on step, and the recorded session replayed.
        teacher = browser.new_context()
        guard(teacher)
        page = teacher.new_page()
        page.on("pageerror", lambda error: seen["errors"].append(str(error)))
        page.goto(plan["instructor_link"])
        page.wait_for_url(base + "/", timeout=30_000)
        row = page.locator(f'tr[data-student="{plan["student"]}"]')
        seen["grid_hosts"] = row.locator('td[data-step="hosts"]').get_attribute("data-status")
        seen["grid_current"] = row.locator("td.current").inner_text()
        seen["grid_time"] = row.locator("td.time").inner_text()
        seen["grid_hints"] = row.locator("td.hints").inner_text()
        client_rows = page.locator("#sessions tbody tr").filter(
            has=page.locator("td:nth-child(2)", has_text="client"))
        seen["sessions"] = client_rows.count()
        client_rows.locator("button.replay").first.click()
        page.wait_for_selector("#player[data-replayed]", timeout=60_000)
        seen["replay_screen"] = screen(page, "#player")
        teacher.close()
        browser.close()
    print(json.dumps(seen))


class _Attack(http.server.BaseHTTPRequestHandler):
    """Another site: a page whose form posts to the portal's Check as soon as it loads."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802
        body = (f'<!doctype html><form id="f" method="POST" action="{self.target}/api/check">'
                '<input name="x" value="1"></form><script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


if __name__ == "__main__":
    plan = json.loads(open(sys.argv[1]).read())
    _Attack.target = plan["base"]
    host, port = plan["other_site"].split("://", 1)[1].rsplit(":", 1)
    attacker = http.server.ThreadingHTTPServer((host, int(port)), _Attack)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        main(sys.argv[1])
    finally:
        attacker.shutdown()
