/* The login page in the language the page was last read in (Chinese unless English was
   chosen); a message the daemon put there keeps the line of that language. */
'use strict';
(function () {
	const T = {
		zh: { title: '登录网关', user: '用户名', password: '密码', submit: '登录', other: 'English',
			failed: '用户名或密码不对', wait: '登录失败太多次：请 {0} 秒后再试' },
		en: { title: 'Log in to the gateway', user: 'User name', password: 'Password',
			submit: 'Log in', other: '中文', failed: 'Wrong user name or password',
			wait: 'Too many failed logins: try again in {0} s' }
	};
	let lang = localStorage.getItem('sluice.lang') === 'en' ? 'en' : 'zh';
	function show() {
		const t = T[lang];
		document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
		document.querySelectorAll('[data-t]').forEach(e => { e.textContent = t[e.dataset.t]; });
		document.getElementById('lang').textContent = t.other;
		const m = document.getElementById('msg');
		if (m && t[m.dataset.msg])
			m.textContent = t[m.dataset.msg].replace('{0}', m.dataset.wait || '');
	}
	document.getElementById('lang').addEventListener('click', () => {
		lang = lang === 'zh' ? 'en' : 'zh';
		localStorage.setItem('sluice.lang', lang);
		show();
	});
	show();
})();
