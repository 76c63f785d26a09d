// Renders /openapi.json as a readable page: operations grouped by service,
// with their descriptions, parameters and body schemas.
(async function () {
  const spec = await (await fetch("/openapi.json")).json();
  const schemas = spec.components.schemas;
  const element = (tag, attributes = {}, ...children) => {
    const node = document.createElement(tag);
    Object.entries(attributes).forEach(([key, value]) => node.setAttribute(key, value));
    children.flat().forEach((child) => node.append(child instanceof Node ? child : document.createTextNode(String(child))));
    return node;
  };
  const resolve = (schema) => (schema && schema.$ref ? schemas[schema.$ref.split("/").pop()] : schema);
  const typeOf = (schema) => {
    if (!schema) return "";
    if (schema.$ref) return schema.$ref.split("/").pop();
    if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
    const kinds = [].concat(schema.type || "any").map((kind) => (kind === "array" ? typeOf(schema.items) + "[]" : kind));
    return kinds.join(" | ") + (schema.format ? ` (${schema.format})` : "");
  };
  const fieldsTable = (schema) => {
    const resolved = resolve(schema);
    if (!resolved || !resolved.properties) return element("pre", {}, JSON.stringify(resolved, null, 2));
    return element("table", {}, element("tr", {}, element("th", {}, "field"), element("th", {}, "type"), element("th", {}, "description")),
      Object.entries(resolved.properties).map(([name, field]) =>
        element("tr", {}, element("td", {}, element("code", {}, name)), element("td", {}, typeOf(field)), element("td", {}, field.description || (resolve(field) || {}).description || ""))));
  };
  document.getElementById("intro").textContent = spec.info.description;
  const groups = {};
  Object.entries(spec.paths).forEach(([path, operations]) =>
    Object.entries(operations).forEach(([verb, operation]) => (groups[operation.tags[0]] ||= []).push({ path, verb, operation })));
  const index = document.getElementById("index");
  const main = document.getElementById("operations");
  Object.entries(groups).forEach(([tag, operations]) => {
    index.append(element("h3", {}, tag));
    main.append(element("h2", {}, tag));
    operations.forEach(({ path, verb, operation }) => {
      index.append(element("a", { href: "#" + operation.operationId }, operation.summary));
      const section = element("section", { id: operation.operationId },
        element("h3", {}, element("span", { class: "verb " + verb }, verb.toUpperCase()), " ", element("code", {}, path)),
        element("p", {}, operation.description || ""));
      if (operation.parameters) {
        section.append(element("h4", {}, "Parameters"), element("table", {},
          operation.parameters.map((parameter) => element("tr", {}, element("td", {}, element("code", {}, parameter.name)), element("td", {}, parameter.in), element("td", {}, typeOf(parameter.schema)), element("td", {}, parameter.description || "")))));
      }
      if (operation.requestBody) {
        section.append(element("h4", {}, "Request body"), fieldsTable(operation.requestBody.content["application/json"].schema));
      }
      const ok = operation.responses["200"];
      const content = ok.content["application/json"] || ok.content["text/event-stream"];
      section.append(element("h4", {}, "Response"), fieldsTable(content.schema));
      main.append(section);
    });
  });
})();
