// Companies and KPIs: a company created and renamed through the console
// against ListCompanies and GetCompany; a refused KPI shown next to its value
// and not stored, a valid one listed as ListKpis has it; a calculator against
// CalculateKpi; a CSV whose bad row is listed by line while the dry run
// stores nothing, then its valid rows stored.
import { pass, waitFor } from "./lib.mjs";

export default async function (suite) {
  const account = await suite.account("kpis");
  const token = account.token;
  const page = await suite.newPage();
  await suite.signIn(page, account);

  // ---- Companies
  await page.getByRole("link", { name: "Companies" }).click();
  await page.locator(".empty").filter({ hasText: "No company yet" }).waitFor();
  pass("an organisation without companies is told to create one");

  const create = page.getByRole("form", { name: "New company" });
  await create.getByRole("button", { name: "Create the company" }).click();
  await create.locator('.field[data-field="name"] .field-error').filter({ hasText: "is required" }).waitFor();
  await create.locator('.field[data-field="sector_id"] .field-error').filter({ hasText: "ListSectors" }).waitFor();
  pass("an empty company form shows CreateCompany's violations under the name and the sector");

  await create.getByLabel("Name").fill("Kpis Test GmbH");
  await create.getByLabel("Sector").selectOption("devtools");
  await create.getByLabel("Business model").selectOption({ label: "B2B SaaS" });
  await create.getByLabel("Country").fill("de");
  await create.getByLabel("Founding year").fill("2019");
  await create.getByRole("button", { name: "Create the company" }).click();
  const row = page.locator("tr[data-company-id]");
  await row.first().waitFor({ timeout: 5_000 });
  const { companies } = await suite.rest("GET", "/v1/companies", { token });
  if (companies.length !== 1) throw new Error(`ListCompanies answers ${companies.length} companies, not 1`);
  const company = companies[0];
  const shownCompany = await row.evaluate((tr) => ({
    companyId: tr.dataset.companyId,
    name: tr.querySelector('[data-column="name"]').textContent,
    sectorId: tr.querySelector('[data-column="sector_id"]').dataset.value,
    businessModel: tr.querySelector('[data-column="business_model"]').dataset.value,
    countryCode: tr.querySelector('[data-column="country_code"]').textContent,
    foundingYear: Number(tr.querySelector('[data-column="founding_year"]').dataset.value),
  }));
  for (const [key, value] of Object.entries(shownCompany)) {
    if (value !== company[key]) throw new Error(`company ${key}: the console shows ${value}, ListCompanies answers ${company[key]}`);
  }
  pass(`the created company's row equals ListCompanies' answer (${company.name}, ${company.sectorId}, ${company.businessModel}, ${company.countryCode}, ${company.foundingYear})`);

  await row.getByRole("button", { name: /Edit/ }).click();
  const edit = page.getByRole("form", { name: `Edit ${company.name}` });
  await edit.getByLabel("Name").fill("Kpis Test AG");
  await edit.getByRole("button", { name: "Save changes" }).click();
  await row.locator('[data-column="name"]').filter({ hasText: "Kpis Test AG" }).waitFor({ timeout: 5_000 });
  const renamed = (await suite.rest("GET", `/v1/companies/${company.companyId}`, { token })).company;
  if (renamed.name !== "Kpis Test AG") throw new Error(`GetCompany answers the name ${renamed.name} after the edit`);
  for (const key of ["sectorId", "businessModel", "countryCode", "foundingYear"]) {
    if (renamed[key] !== company[key]) throw new Error(`the edit changed ${key}: ${company[key]} → ${renamed[key]}`);
  }
  pass("renaming the company changes its name only (GetCompany), and the list shows it");
  await suite.review(page, "companies");

  // ---- KPI entry
  await row.getByRole("link", { name: /KPIs/ }).click();
  await page.locator(".empty").filter({ hasText: "No KPI recorded" }).waitFor({ timeout: 5_000 });
  pass("a company without KPIs says how to add the first");
  const listKpis = async () => (await suite.rest("GET", `/v1/companies/${company.companyId}/kpis`, { token })).kpiValues ?? [];
  const entry = page.getByRole("form", { name: "Enter a KPI" });
  const valueError = entry.locator('.field[data-field="value"] .field-error');

  await entry.getByLabel("Metric").selectOption("grr");
  await entry.getByLabel("Period").fill("2026-Q1");
  await entry.getByLabel("Value").fill("250");
  await entry.getByRole("button", { name: "Check and record" }).click();
  const refusal = await suite.rest("POST", "/v1/kpis:validate", {
    token,
    body: { kpi: { companyId: company.companyId, metricId: "grr", period: "2026-Q1", value: 250 } },
  });
  const refused = refusal.violations.find((violation) => violation.field === "kpi.value");
  if (refusal.status !== "VALIDATION_STATUS_INVALID" || !refused) throw new Error(`ValidateKpi does not refuse a GRR of 250: ${JSON.stringify(refusal)}`);
  await valueError.filter({ hasText: refused.description }).waitFor({ timeout: 5_000 });
  if ((await entry.locator('.field[data-field="value"] input').getAttribute("aria-invalid")) !== "true") throw new Error("the value input is not marked invalid");
  if ((await listKpis()).length !== 0) throw new Error("a refused KPI was stored");
  pass(`a GRR of 250 % shows ValidateKpi's "${refused.description}" next to the value, and ListKpis stays empty`);

  // A period written as a date-ish typo is refused with a suggestion that can be applied.
  await entry.getByLabel("Metric").selectOption("arr");
  await entry.getByLabel("Period").fill("2026-q1");
  await entry.getByLabel("Value").fill("1200000");
  await entry.getByRole("button", { name: "Check and record" }).click();
  const typo = await suite.rest("POST", "/v1/kpis:validate", {
    token,
    body: { kpi: { companyId: company.companyId, metricId: "arr", period: "2026-q1", value: 1200000 } },
  });
  const periodProblem = typo.violations.find((violation) => violation.field === "kpi.period");
  await entry.locator('.field[data-field="period"] .field-error').filter({ hasText: periodProblem.description }).waitFor({ timeout: 5_000 });
  await entry.locator('.field[data-field="period"]').getByRole("button", { name: "Use 2026-Q1" }).click();
  pass("a lowercase quarter shows ValidateKpi's error under the period, with its suggestion as a button");
  await entry.getByRole("button", { name: "Check and record" }).click();
  await page.locator('tr[data-metric-id="arr"][data-period="2026-Q1"]').waitFor({ timeout: 5_000 });
  const stored = await listKpis();
  if (stored.length !== 1) throw new Error(`ListKpis answers ${stored.length} values after one was recorded`);
  const shownValue = Number(await page.locator('tr[data-metric-id="arr"][data-period="2026-Q1"]').getAttribute("data-value"));
  if (shownValue !== stored[0].value || stored[0].metricId !== "arr" || stored[0].period !== "2026-Q1") {
    throw new Error(`the history shows ${shownValue}, ListKpis answers ${JSON.stringify(stored[0])}`);
  }
  if ((await valueError.innerText()).trim() !== "") throw new Error("the value's earlier error is still shown");
  pass(`the recorded ARR is listed with ListKpis' value ${stored[0].value} (source ${stored[0].source})`);

  // A value that is only implausible is recorded once the warning has been seen.
  await entry.getByLabel("Metric").selectOption("ndr");
  await entry.getByLabel("Value").fill("250");
  await entry.getByRole("button", { name: "Check and record" }).click();
  const doubt = await suite.rest("POST", "/v1/kpis:validate", {
    token,
    body: { kpi: { companyId: company.companyId, metricId: "ndr", period: "2026-Q1", value: 250 } },
  });
  const warning = doubt.violations.find((violation) => violation.severity === "VIOLATION_SEVERITY_WARNING");
  if (doubt.status !== "VALIDATION_STATUS_WARNING" || !warning) throw new Error(`ValidateKpi does not warn about an NDR of 250: ${JSON.stringify(doubt)}`);
  await entry.locator('.field[data-field="value"] .field-warning').filter({ hasText: warning.description }).waitFor({ timeout: 5_000 });
  if ((await listKpis()).length !== 1) throw new Error("a value drawing a warning was stored before it was confirmed");
  await entry.getByRole("button", { name: "Record despite the warnings" }).click();
  await page.locator('tr[data-metric-id="ndr"][data-period="2026-Q1"]').waitFor({ state: "attached", timeout: 5_000 });
  if ((await listKpis()).length !== 2) throw new Error("the confirmed value was not stored");
  pass(`an NDR of 250 shows ValidateKpi's warning "${warning.description}" by the value and is stored only when confirmed`);

  // ---- Calculator
  const calculator = page.getByRole("form", { name: "Calculator" });
  await calculator.getByLabel("Metric").selectOption("ndr");
  const inputs = { start_arr: 0, expansion: 150000, contraction: 30000, churn: 50000 };
  const fill = async () => {
    for (const [name, value] of Object.entries(inputs)) await calculator.locator(`.field[data-field="inputs[${name}]"] input`).fill(String(value));
  };
  await fill();
  await calculator.getByRole("button", { name: "Calculate" }).click();
  const undefinedNdr = await suite.raw("POST", "/v1/kpis:calculate", { token, body: { metricId: "ndr", inputs } });
  const startProblem = (await undefinedNdr.json()).details[0].fieldViolations.find((violation) => violation.field === "inputs[start_arr]");
  await calculator.locator('.field[data-field="inputs[start_arr]"] .field-error').filter({ hasText: startProblem.description }).waitFor({ timeout: 5_000 });
  pass(`a zero start ARR shows CalculateKpi's "${startProblem.description}" next to start_arr`);
  inputs.start_arr = 1000000;
  await fill();
  await calculator.getByRole("button", { name: "Calculate" }).click();
  const calculated = await suite.rest("POST", "/v1/kpis:calculate", { token, body: { metricId: "ndr", inputs } });
  const result = page.locator('[data-figure="calculation.value"]');
  await result.waitFor({ timeout: 5_000 });
  if (Number(await result.getAttribute("data-value")) !== calculated.value) throw new Error(`the calculator shows ${await result.getAttribute("data-value")}, CalculateKpi answers ${calculated.value}`);
  const components = await page.locator("tr[data-component]").evaluateAll((rows) => rows.map((tr) => [tr.dataset.component, Number(tr.dataset.value)]));
  const expected = calculated.components.map((component) => [component.name, component.value]);
  if (JSON.stringify(components) !== JSON.stringify(expected)) throw new Error(`components: console ${JSON.stringify(components)}, API ${JSON.stringify(expected)}`);
  pass(`the NDR calculator shows CalculateKpi's ${calculated.value} and its ${expected.length} components`);

  // ---- CSV import
  const csv = 'metric_id,period,value,note\nndr,2025-Q4,105,\nndr,2025-Q5,1,\nmrr,2026-03,100000,"with, a comma"\n';
  await page.getByLabel("CSV file", { exact: true }).setInputFiles({ name: "kpis.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
  const dryRun = await suite.rest("POST", "/v1/kpis:import", { token, body: { csvContent: csv, companyId: company.companyId, dryRun: true } });
  const badLine = dryRun.rejectedRows[0];
  await page.locator(`table[data-issues="rejected"] tr[data-line="${badLine.lineNumber}"]`).filter({ hasText: badLine.reason }).waitFor({ timeout: 5_000 });
  const listedLines = await page.locator('table[data-issues="rejected"] tr[data-line]').evaluateAll((rows) => rows.map((tr) => Number(tr.dataset.line)));
  if (JSON.stringify(listedLines) !== JSON.stringify(dryRun.rejectedRows.map((issue) => issue.lineNumber))) throw new Error(`rejected lines: console ${listedLines}, ImportKpis ${dryRun.rejectedRows.map((issue) => issue.lineNumber)}`);
  const valid = await page.locator('[data-figure="import.accepted_row_count"]').innerText();
  if (valid !== dryRun.acceptedRowCount) throw new Error(`the dry run shows ${valid} valid rows, ImportKpis answers ${dryRun.acceptedRowCount}`);
  if ((await listKpis()).length !== 2) throw new Error("the dry run stored rows");
  pass(`the dry run lists line ${badLine.lineNumber} (${badLine.column}: ${badLine.reason}), counts ${valid} valid rows, and stores nothing`);
  // Reviewed here, with a calculation and a dry run's rows on the page.
  await suite.review(page, "kpis");

  await page.getByRole("button", { name: `Store ${dryRun.acceptedRowCount} valid rows` }).click();
  await page.locator('tr[data-metric-id="mrr"][data-period="2026-03"]').waitFor({ state: "attached", timeout: 5_000 });
  const imported = await listKpis();
  const keys = imported.map((kpi) => `${kpi.metricId} ${kpi.period} ${kpi.value} ${kpi.source}`).sort();
  const wanted = [
    "arr 2026-Q1 1200000 KPI_SOURCE_MANUAL",
    "mrr 2026-03 100000 KPI_SOURCE_CSV_IMPORT",
    "ndr 2025-Q4 105 KPI_SOURCE_CSV_IMPORT",
    "ndr 2026-Q1 250 KPI_SOURCE_MANUAL",
  ];
  if (JSON.stringify(keys) !== JSON.stringify(wanted)) throw new Error(`after the import ListKpis answers ${keys.join("; ")}`);
  const shownRows = await page.locator("tr[data-metric-id][data-period]").evaluateAll((rows) => rows.map((tr) => `${tr.dataset.metricId} ${tr.dataset.period} ${tr.dataset.value}`).sort());
  const apiRows = imported.map((kpi) => `${kpi.metricId} ${kpi.period} ${kpi.value}`).sort();
  if (JSON.stringify(shownRows) !== JSON.stringify(apiRows)) throw new Error(`history after the import: console ${shownRows}, ListKpis ${apiRows}`);
  pass(`storing the valid rows adds exactly them (ListKpis: ${keys.join("; ")}), and the history shows them`);
  await page.context().close();
}
