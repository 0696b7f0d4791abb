// The dashboard: filter, group by node or user, sortable tables, confirmations.
const f=document.getElementById('filter');
function apply(){const q=f.value.trim().toLowerCase();
 document.querySelectorAll('[data-filter]').forEach(e=>{
  e.hidden=!!q&&!e.dataset.filter.toLowerCase().includes(q);});}
f.addEventListener('input',apply);
document.querySelectorAll('input[name=group]').forEach(r=>r.addEventListener('change',()=>{
 document.getElementById('by-node').hidden=r.value!=='node'||!r.checked;
 document.getElementById('by-user').hidden=r.value!=='user'||!r.checked;
 if(r.checked)history.replaceState(null,'','?group='+r.value);}));
document.querySelectorAll('th[data-sort]').forEach(th=>th.addEventListener('click',()=>{
 const tb=th.closest('table').tBodies[0];const col=[...th.parentNode.children].indexOf(th);
 const asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';
 const key=r=>{const c=r.children[col];return c.dataset.v!==undefined?parseFloat(c.dataset.v):c.textContent.toLowerCase()};
 [...tb.rows].sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(asc?1:-1)}).forEach(r=>tb.appendChild(r));}));
document.querySelectorAll('form[data-confirm]').forEach(fm=>fm.addEventListener('submit',e=>{
 if(!confirm(fm.dataset.confirm))e.preventDefault();}));
