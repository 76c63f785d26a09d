// The organisation's companies: the list (ListCompanies, a page at a time),
// a create form (CreateCompany) and an edit form per company (GetCompany for
// the current values, then UpdateCompany with a mask of the fields that
// changed, so an edit never overwrites a field nobody touched). Sectors come
// from ListSectors. Creating and editing are for admins, as the API decides;
// the forms are offered to admins only.
import { currentUser, metrics, withRenewal } from "../api.js";
import { Role } from "../gen/metrix/auth/v1/auth_pb.js";
import type { Sector } from "../gen/metrix/common/v1/common_pb.js";
import { BusinessModel, type Company } from "../gen/metrix/metrics/v1/metrics_pb.js";
import { banner, clearErrors, field, h, notify, replace, scroller, selectField, showError } from "../ui.js";
import type { View } from "../view.js";

const PAGE_SIZE = 25;

const BUSINESS_MODELS: Record<BusinessModel, string> = {
  [BusinessModel.UNSPECIFIED]: "Not set",
  [BusinessModel.B2B_SAAS]: "B2B SaaS",
  [BusinessModel.B2C_SUBSCRIPTION]: "B2C subscription",
  [BusinessModel.MARKETPLACE]: "Marketplace",
  [BusinessModel.ECOMMERCE]: "E-commerce",
  [BusinessModel.USAGE_BASED]: "Usage-based",
  [BusinessModel.TRANSACTIONAL]: "Transactional",
  [BusinessModel.HARDWARE]: "Hardware",
  [BusinessModel.ADVERTISING]: "Advertising",
  [BusinessModel.SERVICES]: "Services",
  [BusinessModel.OTHER]: "Other",
};

/** Every item of a paginated List RPC, page after page. */
export async function everyPage<T>(page: (pageToken: string) => Promise<[T[], string]>): Promise<T[]> {
  const all: T[] = [];
  let pageToken = "";
  do {
    const token = pageToken;
    const [items, next] = await withRenewal(() => page(token));
    all.push(...items);
    pageToken = next;
  } while (pageToken);
  return all;
}

/** The fields a person enters; the rest of a Company is the server's. */
type Editable = Pick<Company, "name" | "sectorId" | "businessModel" | "countryCode" | "foundingYear">;

/** Each editable field with its name in an update mask. */
const MASK_PATHS: [keyof Editable, string][] = [
  ["name", "name"],
  ["sectorId", "sector_id"],
  ["businessModel", "business_model"],
  ["countryCode", "country_code"],
  ["foundingYear", "founding_year"],
];

interface CompanyForm {
  form: HTMLFormElement;
  errors: HTMLElement;
  submit: HTMLButtonElement;
  read(): Editable;
}

function companyForm(label: string, sectors: Sector[], submitText: string, company?: Company): CompanyForm {
  const errors = banner();
  const name = field("Name", "name", { autocomplete: "off", maxlength: 200, value: company?.name });
  const sector = selectField("Sector", "sector_id", [
    ["", "Choose a sector"],
    ...sectors.map((one): [string, string] => [one.id, one.displayName]),
  ]);
  const model = selectField("Business model", "business_model", [
    ["0", "Choose a business model"],
    ...Object.entries(BUSINESS_MODELS)
      .filter(([value]) => value !== String(BusinessModel.UNSPECIFIED))
      .map(([value, text]): [string, string] => [value, text]),
  ]);
  const country = field("Country (ISO code, for example DE)", "country_code", {
    autocomplete: "off",
    autocapitalize: "characters",
    maxlength: 2,
    value: company?.countryCode,
  });
  const founded = field("Founding year (optional)", "founding_year", {
    type: "number",
    inputmode: "numeric",
    step: 1,
    value: company?.foundingYear ? company.foundingYear : undefined,
  });
  sector.select.value = company?.sectorId ?? "";
  model.select.value = String(company?.businessModel ?? BusinessModel.UNSPECIFIED);
  const submit = h("button", { type: "submit", class: "primary" }, submitText);
  const form = h(
    "form",
    { class: "company-form", "aria-label": label, novalidate: true },
    h("div", { class: "field-row" }, name.wrapper, sector.wrapper, model.wrapper, country.wrapper, founded.wrapper),
    errors,
    h("div", { class: "actions" }, submit),
  );
  return {
    form,
    errors,
    submit,
    read: () => ({
      name: name.input.value.trim(),
      sectorId: sector.select.value,
      businessModel: Number(model.select.value) as BusinessModel,
      countryCode: country.input.value.trim().toUpperCase(),
      // Empty means unknown, which the contract writes as 0.
      foundingYear: founded.input.value ? Math.trunc(Number(founded.input.value)) : 0,
    }),
  };
}

export const companiesView: View = (main) => {
  const errors = banner();
  const list = h("div");
  const more = h("button", { type: "button", hidden: true }, "Next page");
  const editor = h("section", { class: "panel", "aria-labelledby": "edit-title", hidden: true });
  const creator = h("section", { class: "panel", "aria-labelledby": "create-title" });
  replace(
    main,
    h("h1", {}, "Companies"),
    errors,
    h("section", { class: "panel", "aria-labelledby": "list-title" }, h("h2", { id: "list-title" }, "Your organisation's companies"), list, more),
    editor,
    creator,
  );

  let sectors: Sector[] = [];
  let admin = false;
  let pageToken = "";

  const sectorName = (id: string) => sectors.find((sector) => sector.id === id)?.displayName ?? id;

  async function showPage(next: boolean): Promise<void> {
    try {
      const answer = await withRenewal(() => metrics.listCompanies({ pageSize: PAGE_SIZE, pageToken: next ? pageToken : "" }));
      pageToken = answer.nextPageToken;
      more.hidden = pageToken === "";
      const rows = answer.companies.map(row);
      if (next) list.querySelector("tbody")?.append(...rows);
      else
        replace(
          list,
          rows.length === 0
            ? h("p", { class: "empty" }, admin ? "No company yet: create the first one with the form below." : "No company yet: ask an admin of your organisation to create one.")
            : scroller(
                "Companies",
                h(
                  "table",
                  { class: "data many-columns" },
                  h(
                    "thead",
                  {},
                    h("tr", {}, ...["Name", "Sector", "Business model", "Country", "Founded", "Revenue band", "Actions"].map((title) => h("th", { scope: "col" }, title))),
                  ),
                  h("tbody", {}, ...rows),
                ),
              ),
        );
    } catch (error) {
      showError(error, errors);
    }
  }

  function row(company: Company): HTMLElement {
    const hidden = (text: string) => h("span", { class: "visually-hidden" }, text);
    return h(
      "tr",
      { "data-company-id": company.companyId },
      h("th", { scope: "row", "data-column": "name" }, company.name),
      h("td", { "data-column": "sector_id", "data-value": company.sectorId }, sectorName(company.sectorId)),
      h("td", { "data-column": "business_model", "data-value": `BUSINESS_MODEL_${BusinessModel[company.businessModel]}` }, BUSINESS_MODELS[company.businessModel]),
      h("td", { "data-column": "country_code" }, company.countryCode),
      h("td", { "data-column": "founding_year", "data-value": company.foundingYear }, company.foundingYear || "—"),
      h("td", { "data-column": "revenue_band_id" }, company.revenueBandId || "—"),
      h(
        "td",
        { class: "row-actions" },
        h("a", { href: `#/kpis?company=${encodeURIComponent(company.companyId)}` }, "KPIs", hidden(` of ${company.name}`)),
        admin && h("button", { type: "button", class: "link", "data-action": "edit", onclick: () => void edit(company.companyId) }, "Edit", hidden(` ${company.name}`)),
      ),
    );
  }

  async function edit(companyId: string): Promise<void> {
    clearErrors(errors);
    let company: Company | undefined;
    try {
      company = (await withRenewal(() => metrics.getCompany({ companyId }))).company;
    } catch (error) {
      showError(error, errors);
      return;
    }
    if (!company) return;
    const original = company;
    const form = companyForm(`Edit ${original.name}`, sectors, "Save changes", original);
    const cancel = h("button", { type: "button", onclick: () => (editor.hidden = true) }, "Cancel");
    form.submit.after(cancel);
    form.form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form.errors, form.form);
      const fields = form.read();
      const paths = MASK_PATHS.filter(([key]) => fields[key] !== original[key]).map(([, path]) => path);
      if (paths.length === 0) {
        notify(form.errors, "Nothing changed.");
        return;
      }
      form.submit.disabled = true;
      withRenewal(() => metrics.updateCompany({ company: { companyId, ...fields }, updateMask: { paths } }))
        .then((answer) => {
          editor.hidden = true;
          notify(errors, `Saved ${answer.company?.name ?? ""}.`);
          return showPage(false);
        })
        .catch((error: unknown) => showError(error, form.errors, form.form))
        .finally(() => (form.submit.disabled = false));
    });
    editor.hidden = false;
    replace(editor, h("h2", { id: "edit-title" }, `Edit ${original.name}`), form.form);
    form.form.querySelector("input")?.focus();
  }

  function showCreator(): void {
    if (!admin) {
      replace(creator, h("h2", { id: "create-title" }, "New company"), h("p", { class: "muted" }, "Only admins of the organisation create and edit companies."));
      return;
    }
    const form = companyForm("New company", sectors, "Create the company");
    form.form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form.errors, form.form);
      form.submit.disabled = true;
      withRenewal(() => metrics.createCompany({ company: form.read() }))
        .then((answer) => {
          notify(errors, `Created ${answer.company?.name ?? ""}.`);
          showCreator();
          return showPage(false);
        })
        .catch((error: unknown) => showError(error, form.errors, form.form))
        .finally(() => (form.submit.disabled = false));
    });
    replace(creator, h("h2", { id: "create-title" }, "New company"), form.form);
  }

  more.addEventListener("click", () => void showPage(true));
  void (async () => {
    try {
      const [me, all] = await Promise.all([
        currentUser(),
        everyPage((token) => metrics.listSectors({ pageSize: 1000, pageToken: token }).then((answer): [Sector[], string] => [answer.sectors, answer.nextPageToken])),
      ]);
      admin = me.user.role === Role.ADMIN;
      sectors = all;
    } catch (error) {
      showError(error, errors);
    }
    showCreator();
    await showPage(false);
  })();
};
