/* The page's behaviour: configure htmx for the cross-origin API, preview / drag-and-drop / paste, client-side size
 * check, and readable errors for everything that can go wrong (the service answers errors as HTML fragments; the
 * network failures and timeouts are rendered here in the same shape).
 * Loaded with `defer` after config.js and htmx, so it runs before htmx initialises the document. */
(function () {
  'use strict';

  var config = window.CLASSIFIER_CONFIG || {};
  var apiUrl = String(config.apiUrl || '').replace(/\/+$/, ''); // '' = same origin as the page
  var MAX_BYTES = Number(config.maxUploadBytes) > 0 ? Number(config.maxUploadBytes) : 10 * 1024 * 1024;
  var TIMEOUT_MS = Number(config.timeoutMs) > 0 ? Number(config.timeoutMs) : 30000;

  var form = document.getElementById('classify-form');
  var input = document.getElementById('file');
  var dropzone = document.getElementById('dropzone');
  var preview = document.getElementById('preview');
  var emptyState = document.getElementById('dropzone-empty');
  var fileName = document.getElementById('file-name');
  var hintChange = document.getElementById('hint-change');
  var result = document.getElementById('result');
  var currentFile = null;
  var previewUrl = null;

  function formatBytes(n) {
    if (n >= 1024 * 1024) return (n / (1024 * 1024)).toFixed(n >= 10 * 1024 * 1024 ? 0 : 1) + ' MB';
    if (n >= 1024) return Math.round(n / 1024) + ' KB';
    return n + ' bytes';
  }

  /* Same markup as the service's error fragment, built with DOM calls (never innerHTML). */
  function renderError(code, title, detail) {
    var box = document.createElement('div');
    box.className = 'error';
    box.setAttribute('role', 'alert');
    box.setAttribute('data-error', code);
    var strong = document.createElement('strong');
    strong.textContent = title;
    var span = document.createElement('span');
    span.textContent = detail;
    box.append(strong, ' ', span);
    result.replaceChildren(box);
    revealResult();
  }

  /* On a phone the answer is below the picture: bring it into view (focus stays where it is). */
  function revealResult() {
    var box = result.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    var reduce = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    result.scrollIntoView({ behavior: reduce ? 'auto' : 'smooth', block: 'nearest' });
  }

  document.getElementById('max-size').textContent = formatBytes(MAX_BYTES);

  if (!window.htmx) {
    renderError('no_htmx', 'The page did not load completely.', 'Reload it to try again.');
    return;
  }

  // --- htmx configuration (before htmx initialises the document) ------------------------------------------
  htmx.config.selfRequestsOnly = false; // the API is on another origin when deployed (see config.js)
  htmx.config.includeIndicatorStyles = false; // it would inject an inline <style> (CSP); style.css has the rules
  htmx.config.allowEval = false; // no eval: the CSP has no 'unsafe-eval'
  htmx.config.allowScriptTags = false; // never run scripts from a swapped fragment
  htmx.config.historyEnabled = false;
  htmx.config.timeout = TIMEOUT_MS;
  // htmx 2 does not swap 4xx/5xx by default; the service answers errors as fragments meant to be shown.
  htmx.config.responseHandling = [
    { code: '204', swap: false },
    { code: '[23]..', swap: true },
    { code: '[45]..', swap: true, error: true },
    { code: '...', swap: false },
  ];

  // --- choosing a file: input, drag-and-drop, paste ---------------------------------------------------------
  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    fileName.textContent = file.name ? file.name + ' · ' + formatBytes(file.size) : formatBytes(file.size);
    fileName.hidden = false;
    showingPreview(file.type && file.type.indexOf('image/') === 0);
    if (!preview.hidden) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;
      preview.alt = 'Preview of ' + (file.name || 'your picture');
    } else {
      preview.removeAttribute('src');
    }
  }

  function showingPreview(on) {
    preview.hidden = !on;
    emptyState.hidden = on;
    hintChange.hidden = !on;
  }

  preview.addEventListener('error', function () {
    // Not something the browser can show (e.g. HEIC): keep the file, let the service decide.
    showingPreview(false);
  });

  function submit() {
    if (typeof form.requestSubmit === 'function') form.requestSubmit();
    else htmx.trigger(form, 'submit');
  }

  function setFile(file, fromInput) {
    if (!file) return;
    currentFile = file;
    if (!fromInput) {
      // Keep the input in step with a dropped or pasted file (the request also sets it explicitly).
      try {
        var transfer = new DataTransfer();
        transfer.items.add(file);
        input.files = transfer.files;
      } catch (_) {
        /* older browsers: the file still goes with the request, see htmx:configRequest */
      }
    }
    showPreview(file);
    if (file.size === 0) {
      renderError('empty_file', 'That file is empty.', 'Choose another picture.');
      return;
    }
    if (file.size > MAX_BYTES) {
      renderError(
        'body_too_large',
        'That picture is too large.',
        'It is ' + formatBytes(file.size) + '; the limit is ' + formatBytes(MAX_BYTES) +
          '. Try a smaller copy or a screenshot of it.'
      );
      return;
    }
    submit();
  }

  input.addEventListener('change', function () {
    if (input.files && input.files.length) setFile(input.files[0], true);
  });

  function firstFile(dataTransfer) {
    if (!dataTransfer) return null;
    if (dataTransfer.files && dataTransfer.files.length) return dataTransfer.files[0];
    var items = dataTransfer.items || [];
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind === 'file') return items[i].getAsFile();
    }
    return null;
  }

  function hasFiles(event) {
    var types = (event.dataTransfer && event.dataTransfer.types) || [];
    return Array.prototype.indexOf.call(types, 'Files') !== -1;
  }

  // The whole page is a drop target, so a near miss does not open the file in the tab.
  var dragDepth = 0;
  document.addEventListener('dragenter', function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    dropzone.classList.add('is-dragover');
  });
  document.addEventListener('dragover', function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('dragleave', function (event) {
    if (!hasFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dropzone.classList.remove('is-dragover');
  });
  document.addEventListener('drop', function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove('is-dragover');
    setFile(firstFile(event.dataTransfer), false);
  });

  document.addEventListener('paste', function (event) {
    var file = firstFile(event.clipboardData);
    if (!file) return;
    event.preventDefault();
    setFile(file, false);
  });

  // --- the request and its outcomes ----------------------------------------------------------------------
  // Request events fire on the form; swap events on the target (#result).
  htmx.on(form, 'htmx:configRequest', function (event) {
    if (!currentFile) {
      event.preventDefault();
      renderError('missing_file', 'Choose a picture first.', 'Pick one, drop it on the page, or paste it.');
      return;
    }
    event.detail.formData.set('file', currentFile, currentFile.name || 'pasted-image');
    // Send only HX-Request across origins (the others would leak the page URL and widen the CORS preflight).
    var headers = event.detail.headers;
    Object.keys(headers).forEach(function (name) {
      if (name !== 'HX-Request') delete headers[name];
    });
  });

  htmx.on(form, 'htmx:beforeRequest', function () {
    result.classList.add('is-busy');
    result.setAttribute('aria-busy', 'true');
  });

  htmx.on(form, 'htmx:afterRequest', function () {
    result.classList.remove('is-busy');
    result.removeAttribute('aria-busy');
  });

  htmx.on(result, 'htmx:beforeSwap', function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status < 400) return;
    var body = typeof xhr.response === 'string' ? xhr.response : '';
    if (/class="error"/.test(body)) return; // the service's own error fragment: swap it in
    // Anything else (a proxy's error page, JSON): say it in words instead.
    event.detail.shouldSwap = false;
    if (xhr.status === 413) {
      renderError('body_too_large', 'That picture is too large for the service.', 'Try a smaller copy of it.');
    } else if (xhr.status === 415 || xhr.status === 422) {
      renderError('not_an_image', "That file doesn't look like a picture.", 'Choose a JPEG, PNG, WebP, AVIF or GIF.');
    } else if (xhr.status === 429 || xhr.status === 503) {
      renderError('overloaded', 'The classifier is busy right now.', 'Please try again in a few seconds.');
    } else {
      renderError('http_' + xhr.status, 'Something went wrong (error ' + xhr.status + ').', 'Please try again.');
    }
  });

  htmx.on(result, 'htmx:afterSwap', revealResult);

  htmx.on(form, 'htmx:sendError', function () {
    renderError(
      'unreachable',
      "Couldn't reach the classifier.",
      'The service may be down or restarting. Check your connection and try again in a moment.'
    );
  });

  htmx.on(form, 'htmx:timeout', function () {
    renderError('timeout', 'The classifier took too long to answer.', 'It may be busy. Please try again in a moment.');
  });

  /* How often the served model is right, from its own card (GET /model): the page never states a number of its own. */
  function showAccuracy() {
    fetch(apiUrl + '/model', { headers: { Accept: 'application/json' } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (model) {
        var metrics = (model && model.metrics) || {};
        var key = model && model.quantization !== 'none' ? 'test_top1_int8' : 'test_top1_fp32';
        var top1 = Number(key in metrics ? metrics[key] : metrics.test_top1);
        if (!(top1 > 0 && top1 <= 1)) return;
        var line = document.getElementById('model-accuracy');
        line.textContent = 'It names the right one for ' + (top1 * 100).toFixed(1) + ' % of the CIFAR-10 test photos.';
        line.hidden = false;
      })
      .catch(function () {}); // no line rather than a wrong one; an upload reports an unreachable service itself
  }

  // --- point the form at the API (htmx has processed the page by now) --------------------------------------
  document.addEventListener('DOMContentLoaded', function () {
    form.setAttribute('hx-post', apiUrl + '/classify');
    var docs = document.getElementById('api-docs');
    docs.href = apiUrl + '/docs';
    docs.hidden = false;
    form.setAttribute('hx-sync', 'this:replace'); // a new picture replaces a request still in flight
    htmx.process(form);
    showAccuracy();
  });
})();
