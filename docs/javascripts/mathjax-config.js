// MathJax 3 settings for the whole site. Python-Markdown's arithmatex turns
// $...$ in Markdown pages into \(...\) inside .arithmatex elements, while
// notebook markdown cells reach the page with their $...$ untouched inside
// .jp-MarkdownOutput. MathJax typesets only those two kinds of element, so a
// dollar sign in code or in a cell's output is left alone.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
    tags: "ams",
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|jp-MarkdownOutput",
  },
};

// Material's instant navigation swaps the page body without a reload, so the
// new page is typeset again each time the document$ observable emits.
if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    if (!window.MathJax.startup || !window.MathJax.typesetPromise) {
      return;
    }
    window.MathJax.startup.output.clearCache();
    window.MathJax.typesetClear();
    window.MathJax.texReset();
    window.MathJax.typesetPromise();
  });
}
