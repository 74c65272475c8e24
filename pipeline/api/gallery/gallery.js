"use strict";
// The gallery talks to the API that served it, by relative URLs (the page's own path is the
// API's base: "/" locally, "/<stage>/" on API Gateway). Every failure is shown in #error.
(() => {
  const KEY_STORAGE = "imgsim.apiKey";
  const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const $ = (id) => document.getElementById(id);
  let prompts = [];
  let searches = 0; // the newest search's number: an older answer arriving late is dropped

  function apiUrl(path, params) {
    const url = new URL(path.replace(/^\//, ""), location.origin + base);
    for (const [name, value] of Object.entries(params || {})) url.searchParams.set(name, value);
    return url;
  }

  async function api(method, path, { params, body } = {}) {
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers["x-api-key"] = key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(apiUrl(path, params), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiFailure(0, "network_error", `${method} ${path}: ${err.message}`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiFailure(
        response.status,
        error.code || "http_" + response.status,
        error.message || (data && data.message) || text.slice(0, 200) || response.statusText
      );
    }
    return data;
  }

  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function showError(err) {
    const box = $("error");
    box.textContent =
      err instanceof ApiFailure
        ? `${err.status || "no answer"} ${err.code}: ${err.message}`
        : `error: ${err.message || err}`;
    box.hidden = false;
  }

  function status(text) {
    $("status").textContent = text;
  }

  // Runs one user action: clears the last error, shows progress, and reports any failure.
  async function action(label, work) {
    $("error").hidden = true;
    status(label + " ...");
    try {
      await work();
      status(label + ": done");
    } catch (err) {
      status(label + ": failed");
      showError(err);
    }
  }

  function currentPrompt() {
    const choice = prompts[Number($("prompt").value)];
    return choice ? choice.prompt : "";
  }

  function topK() {
    return Math.max(1, Math.min(100, Number($("k").value) || 10));
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "onclick") node.addEventListener("click", value);
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  async function loadPrompts() {
    const data = await api("GET", "/prompts");
    const shown = currentPrompt();
    prompts = data.prompts;
    const select = $("prompt");
    select.replaceChildren(
      ...prompts.map((p, i) =>
        el("option", { value: String(i) }, `${p.prompt} (${p.images} images, ${p.model_id})`)
      )
    );
    if (!prompts.length) {
      $("prompt-info").textContent = "No prompt has embedded images yet.";
      return;
    }
    // a reload keeps the prompt shown; the page opens on the prompt with the most images (the
    // first of those, on a tie), so the first view already shows results
    const kept = prompts.findIndex((p) => p.prompt === shown);
    select.value = String(kept >= 0 ? kept : mostImages(prompts));
    await choosePrompt();
  }

  function mostImages(list) {
    return list.reduce((best, p, i) => (p.images > list[best].images ? i : best), 0);
  }

  async function choosePrompt() {
    const choice = prompts[Number($("prompt").value)];
    if (!choice) return;
    $("prompt-info").textContent =
      `model ${choice.model_id}, ${choice.images} images; ` +
      `newest ${choice.newest.image_id} (${choice.newest.created_at})`;
    $("image-id").value = choice.newest.image_id;
    await searchById(choice.newest.image_id);
  }

  async function searchById(imageId) {
    if (!imageId) throw new Error("type an image id");
    const prompt = currentPrompt();
    if (!prompt) throw new Error("choose a prompt first");
    const search = ++searches;
    const record = await api("GET", "/images/" + encodeURIComponent(imageId));
    if (search !== searches) return;
    showQuery(record.url, `image ${imageId}`, imageId);
    const page = await api("GET", "/similarity", {
      params: { image_id: imageId, prompt, k: String(topK()) },
    });
    if (search !== searches) return;
    showResults(page.results, `${page.candidates} candidates, model ${page.model_id}`);
  }

  function readFile() {
    const file = $("file").files[0];
    if (!file) return Promise.reject(new Error("choose a photo first"));
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve({ file, dataUrl: reader.result });
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function searchByFile() {
    const prompt = currentPrompt();
    if (!prompt) throw new Error("choose a prompt first");
    const { file, dataUrl } = await readFile();
    const search = ++searches;
    showQuery(URL.createObjectURL(file), `your photo ${file.name}`, null);
    const answer = await api("POST", "/similarity", {
      body: { prompt, k: topK(), images: [dataUrl] },
    });
    if (search !== searches) return;
    const list = answer.queries[0];
    showResults(list.results, `model ${list.model_id}`);
  }

  async function uploadFile() {
    const { file, dataUrl } = await readFile();
    const prompt = currentPrompt();
    const stored = await api("POST", "/images", {
      body: prompt ? { image_data: dataUrl, prompt } : { image_data: dataUrl },
    });
    showQuery(URL.createObjectURL(file), `uploaded ${file.name} as ${stored.image_id}`, stored.image_id);
    await openRecord(stored.image_id);
  }

  async function generate() {
    const prompt = $("generate-prompt").value.trim() || currentPrompt();
    if (!prompt) throw new Error("type a prompt to generate");
    const made = await api("GET", "/images", { params: { prompt } });
    await openRecord(made.image_id);
  }

  async function openRecord(imageId) {
    const record = await api("GET", "/images/" + encodeURIComponent(imageId));
    $("record-image").src = record.url;
    $("record").textContent = JSON.stringify(record, null, 2);
    $("record-panel").hidden = false;
    $("record-panel").scrollIntoView({ block: "nearest" });
  }

  function showQuery(src, caption, imageId) {
    const children = [el("img", { src, alt: caption }), el("span", {}, caption)];
    if (imageId) {
      children.push(
        el("button", { type: "button", onclick: () => action("record", () => openRecord(imageId)) }, "record")
      );
    }
    $("query").replaceChildren(...children);
  }

  function showResults(results, summary) {
    $("summary").textContent = `${results.length} results (${summary})`;
    $("results").replaceChildren(
      ...results.map((r, i) =>
        el(
          "li",
          { class: "result", "data-testid": "result", "data-image-id": r.image_id },
          el("img", { src: r.url, alt: `result ${i + 1}: ${r.image_id}`, loading: "lazy" }),
          el("span", { class: "score", "data-testid": "score" }, r.similarity.toFixed(4)),
          el("span", { class: "id" }, `#${i + 1} ${r.image_id}`),
          el(
            "span",
            { class: "buttons" },
            el(
              "button",
              { type: "button", "data-testid": "open-record", onclick: () => action("record", () => openRecord(r.image_id)) },
              "record"
            ),
            el(
              "button",
              {
                type: "button",
                onclick: () => {
                  $("image-id").value = r.image_id;
                  action("search", () => searchById(r.image_id));
                },
              },
              "more like this"
            )
          )
        )
      )
    );
  }

  function bind() {
    $("docs-link").href = base + "docs";
    $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
      action("prompts", loadPrompts);
    });
    $("reload-prompts").addEventListener("click", () => action("prompts", loadPrompts));
    $("prompt").addEventListener("change", () => action("search", choosePrompt));
    $("by-id").addEventListener("submit", (event) => {
      event.preventDefault();
      action("search", () => searchById($("image-id").value.trim()));
    });
    $("search-file").addEventListener("click", () => action("search", searchByFile));
    $("upload-file").addEventListener("click", () => action("upload", uploadFile));
    $("generate").addEventListener("submit", (event) => {
      event.preventDefault();
      action("generate", generate);
    });
  }

  bind();
  action("prompts", loadPrompts);
})();
