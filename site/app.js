/* The page's behaviour: configure htmx for the cross-origin API, preview / drag-and-drop / paste, client-side size
 * check, and readable errors for everything that can go wrong (the service answers errors as HTML fragments; the
 * network failures and timeouts are rendered here in the same shape); and the reply to "Is this right?" under an
 * answer, posted as JSON to /feedback.
 * The service's facts (formats, body limit, error titles, the model's test accuracy) come from GET /site-config;
 * until it answers, and if it never does, the page goes by index.html's copy of them (#service-facts).
 * Loaded with `defer` after config.js and htmx, so it runs before htmx initialises the document. */
(function () {
  'use strict';

  var config = window.CLASSIFIER_CONFIG || {};
  var apiUrl = String(config.apiUrl || '').replace(/\/+$/, ''); // '' = same origin as the page
  // Cloud Run ends a request after 30 s (--timeout in cloudbuilds/cloudbuild.yaml): no answer comes later than that.
  var TIMEOUT_MS = 30000;
  // Errors no answer of the service's can title: the page meets them on its own.
  var PAGE_ERROR_TITLES = {
    no_htmx: 'The page did not load completely.',
    unreachable: "Couldn't reach the classifier.",
    timeout: 'The classifier took too long to answer.',
  };

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
  var maxBytes = Infinity; // the service's body limit, once known (it checks anyway)
  var formatNames = [];
  var errorTitles = {};

  function formatBytes(n) {
    if (n >= 1024 * 1024) return (n / (1024 * 1024)).toFixed(n >= 10 * 1024 * 1024 ? 0 : 1) + ' MB';
    if (n >= 1024) return Math.round(n / 1024) + ' KB';
    return n + ' bytes';
  }

  function listInWords(names) {
    return names.length > 1 ? names.slice(0, -1).join(', ') + ' or ' + names[names.length - 1] : names.join('');
  }

  function isTextList(value) {
    return Array.isArray(value) && value.every(function (item) { return typeof item === 'string' && item; });
  }

  /* Take the service's facts (GET /site-config's answer, or index.html's copy), each one only if well-formed. */
  function applyFacts(facts) {
    if (!facts || typeof facts !== 'object') return;
    var formats = facts.formats;
    var wellFormed = Array.isArray(formats) && formats.length && formats.every(function (format) {
      return format && typeof format.name === 'string' && typeof format.media_type === 'string' &&
        isTextList(format.extensions);
    });
    if (wellFormed) {
      formatNames = formats.map(function (format) { return format.name; });
      input.accept = formats.map(function (format) {
        return [format.media_type].concat(format.extensions).join(',');
      }).join(',');
      document.getElementById('accepted-formats').textContent = listInWords(formatNames);
    }
    if (Number(facts.max_body_bytes) > 0) {
      maxBytes = Number(facts.max_body_bytes);
      document.getElementById('max-size').textContent = formatBytes(maxBytes);
    }
    if (facts.errors && typeof facts.errors === 'object') {
      Object.keys(facts.errors).forEach(function (code) {
        if (typeof facts.errors[code] === 'string') errorTitles[code] = facts.errors[code];
      });
    }
  }

  function pageFacts() {
    try {
      return JSON.parse(document.getElementById('service-facts').textContent);
    } catch (_) {
      return null; // a page without its copy still works: the service checks what the page cannot
    }
  }

  /* An error by its code, titled as the service titles it (or as the page does, for the page's own). */
  function showError(code, detail) {
    renderError(code, errorTitles[code] || PAGE_ERROR_TITLES[code] || code, detail);
  }

  /* Same markup as the service's error fragment, built with DOM calls (never innerHTML). */
  function errorBox(code, title, detail) {
    var box = document.createElement('div');
    box.className = 'error';
    box.setAttribute('role', 'alert');
    box.setAttribute('data-error', code);
    var strong = document.createElement('strong');
    strong.textContent = title;
    var span = document.createElement('span');
    span.textContent = detail;
    box.append(strong, ' ', span);
    return box;
  }

  function renderError(code, title, detail) {
    result.replaceChildren(errorBox(code, title, detail));
    revealResult();
  }

  /* On a phone the answer is below the picture: bring it into view (focus stays where it is). */
  function revealResult() {
    var box = result.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    var reduce = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    result.scrollIntoView({ behavior: reduce ? 'auto' : 'smooth', block: 'nearest' });
  }

  applyFacts(pageFacts());

  if (!window.htmx) {
    showError('no_htmx', 'Reload it to try again.');
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
      showError('empty_file', 'Choose another picture.');
      return;
    }
    if (file.size > maxBytes) {
      showError(
        'body_too_large',
        'It is ' + formatBytes(file.size) + '; the limit is ' + formatBytes(maxBytes) +
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
    if (explainNext) {
      // "Why?": the same picture again, asking where the model looked (the plain answer never carries it).
      event.detail.path += (event.detail.path.indexOf('?') < 0 ? '?' : '&') + 'explain=1';
      explainNext = false;
    }
    if (!currentFile) {
      event.preventDefault();
      showError('missing_file', 'Choose a picture first: pick one, drop it on the page, or paste it.');
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
      showError('body_too_large', 'Try a smaller copy of it.');
    } else if (xhr.status === 415 || xhr.status === 422) {
      showError('not_an_image', 'Choose a ' + listInWords(formatNames) + '.');
    } else if (xhr.status === 429 || xhr.status === 503) {
      showError('overloaded', 'Please try again in a few seconds.');
    } else {
      renderError('http_' + xhr.status, 'Something went wrong (error ' + xhr.status + ').', 'Please try again.');
    }
  });

  htmx.on(result, 'htmx:afterSwap', revealResult);

  htmx.on(form, 'htmx:sendError', function () {
    showError('unreachable', 'The service may be down or restarting. Check your connection and try again in a moment.');
  });

  htmx.on(form, 'htmx:timeout', function () {
    showError('timeout', 'It may be busy. Please try again in a moment.');
  });

  // --- examples a visitor can try, and "Why?" under an answer --------------------------------------------------
  var explainNext = false;

  document.addEventListener('click', function (event) {
    var example = event.target.closest && event.target.closest('button.example');
    if (example) {
      var src = example.getAttribute('data-src');
      fetch(src)
        .then(function (response) {
          if (!response.ok) throw new Error('example ' + response.status);
          return response.blob();
        })
        .then(function (blob) {
          setFile(new File([blob], src.split('/').pop(), { type: blob.type }), false);
        })
        .catch(function () {
          showError('unreachable', 'The example could not be loaded. Choose a picture of your own.');
        });
      return;
    }
    var why = event.target.closest && event.target.closest('.result-why-button');
    if (why && currentFile) {
      explainNext = true;
      submit();
    }
  });

  // --- "Is this right?" under each answer (the fragment's form.feedback): the reply goes to POST /feedback --------
  // The thumbnail is the model's exact input, in the fragment as a base64 data: URL; its base64 is sent only if the
  // box is ticked (the service checks what it is).

  function feedbackPayload(box, button) {
    var predicted = box.getAttribute('data-predicted');
    var label = predicted; // "Yes"
    if (button && button.value === 'wrong') label = box.querySelector('select[name="label"]').value;
    var consent = box.querySelector('input[name="share_thumbnail"]');
    var payload = {
      request_id: box.getAttribute('data-request-id'),
      token: box.getAttribute('data-token'),
      label: label,
      predicted: predicted,
      share_thumbnail: Boolean(consent && consent.checked),
    };
    var seen = result.querySelector('.result-thumbnail');
    var src = seen ? seen.getAttribute('src') || '' : '';
    if (payload.share_thumbnail && /^data:[^,]*;base64,/.test(src)) payload.thumbnail = src.slice(src.indexOf(',') + 1);
    return payload;
  }

  function setFeedbackBusy(box, busy) {
    Array.prototype.forEach.call(box.querySelectorAll('button, select, input'), function (control) {
      control.disabled = busy;
    });
  }

  function feedbackError(box, code, detail, title) {
    var status = box.querySelector('.feedback-status');
    status.classList.remove('is-thanks');
    title = title || errorTitles[code] || PAGE_ERROR_TITLES[code] || 'Your answer could not be sent.';
    status.replaceChildren(errorBox(code, title, detail));
    setFeedbackBusy(box, false);
  }

  function feedbackThanks(box, payload) {
    var status = box.querySelector('.feedback-status');
    var fieldset = box.querySelector('fieldset');
    if (fieldset) fieldset.remove();
    status.classList.add('is-thanks');
    status.textContent = 'Thank you! ' + (payload.share_thumbnail
      ? 'Your answer and the picture the model saw help to train it.'
      : 'Your answer helps to check the model.');
    status.setAttribute('tabindex', '-1');
    status.focus(); // the buttons are gone: keep the keyboard's place here
  }

  result.addEventListener('submit', function (event) {
    var box = event.target;
    if (!box.classList || !box.classList.contains('feedback')) return;
    event.preventDefault();
    var payload = feedbackPayload(box, event.submitter);
    if (!payload.label) {
      feedbackError(box, 'choose_label', 'Choose what it shows, or "none of these", then send.', 'What is it?');
      box.querySelector('select[name="label"]').focus();
      return;
    }
    setFeedbackBusy(box, true);
    fetch(apiUrl + '/feedback', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(payload),
    })
      .then(function (response) {
        if (response.ok) {
          feedbackThanks(box, payload);
          return null;
        }
        return response.json().catch(function () { return null; }).then(function (body) {
          var code = body && typeof body.error === 'string' ? body.error : 'http_' + response.status;
          var detail = body && typeof body.detail === 'string' ? body.detail : 'Please try again.';
          feedbackError(box, code, detail);
        });
      })
      .catch(function () {
        feedbackError(box, 'unreachable', 'Your answer was not sent. Check your connection and try again.');
      });
  });

  /* How often the served model is right: the metric the service picks from the model's card; the page never
   * states a number of its own. */
  function showAccuracy(metric) {
    var top1 = Number(metric && metric.value);
    if (!(top1 > 0 && top1 <= 1)) return;
    var line = document.getElementById('model-accuracy');
    line.textContent = 'It names the right one for ' + (top1 * 100).toFixed(1) + ' % of the CIFAR-10 test photos.';
    line.hidden = false;
  }

  function loadServiceFacts() {
    fetch(apiUrl + '/site-config', { headers: { Accept: 'application/json' } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (facts) {
        applyFacts(facts);
        showAccuracy(facts && facts.headline_metric);
      })
      .catch(function () {}); // index.html's copy stands, no accuracy line; an upload reports the service itself
  }

  // --- point the form at the API (htmx has processed the page by now) --------------------------------------
  document.addEventListener('DOMContentLoaded', function () {
    form.setAttribute('hx-post', apiUrl + '/classify');
    var docs = document.getElementById('api-docs');
    docs.href = apiUrl + '/docs';
    docs.hidden = false;
    form.setAttribute('hx-sync', 'this:replace'); // a new picture replaces a request still in flight
    htmx.process(form);
    loadServiceFacts();
  });
})();
