// Offer only the images of the chosen spec.
(function(){
  var form = document.currentScript.closest('form') || document;
  function sync(){
    var chosen = form.querySelector('input[name=spec]:checked');
    if(!chosen) return;
    var ok = JSON.parse(chosen.getAttribute('data-images'));
    var sel = form.querySelector('select[name=image]');
    var first = null;
    Array.prototype.forEach.call(sel.options, function(o){
      var show = ok.indexOf(o.value) >= 0; o.hidden = !show; o.disabled = !show;
      if(show && first === null) first = o;
    });
    if(sel.selectedOptions.length === 0 || sel.selectedOptions[0].disabled){ if(first) first.selected = true; }
  }
  form.querySelectorAll('input[name=spec]').forEach(function(r){ r.addEventListener('change', sync); });
  sync();
})();
