// xterm.js makes <style> elements of its own; the page's CSP lets in only those with this response's nonce.
(function () {
  "use strict";
  const nonce = document.querySelector('meta[name="style-nonce"]').content;
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (name, options) {
    const element = create.call(this, name, options);
    if (String(name).toLowerCase() === "style") { element.nonce = nonce; }
    return element;
  };
})();
