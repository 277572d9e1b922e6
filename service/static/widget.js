/*! supportbot chat widget | MIT License
 *
 * Embed: <script src="https://BOT-HOST/widget.js" async data-title="Support"></script>
 * Plain JavaScript, no framework, no build step. Everything lives in an open shadow root of a
 * <supportbot-widget> element, so the host page's CSS cannot reach in and ours cannot leak out.
 * The service serves this file together with the vendored DOMPurify in one closure (service/api/widget.py);
 * loaded on its own it still renders safely (bot text is built with textContent, never parsed as HTML).
 */
(function (purifier) {
  "use strict";

  if (window.SupportBot && window.SupportBot.version) return; // embedded twice: the first one wins

  var VERSION = "1.0.0";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

  // ---------------------------------------------------------------- configuration

  var DEFAULTS = {
    apiBase: "",
    title: "Support",
    subtitle: "",
    greeting: "",
    primaryColor: "#4f46e5",
    position: "bottom-right",
    openOnLoad: false,
    locale: "",
    strings: {},
    userId: "",
    userHash: "",
    context: {},
    pollInterval: 3000,
    zIndex: 2147483000,
  };

  var STRINGS = {
    en: {
      launcherOpen: "Open support chat",
      launcherClose: "Close support chat",
      unread: "{count} unread",
      close: "Close chat",
      newConversation: "New conversation",
      newConversationStarted: "New conversation started.",
      subtitle: "We usually answer right away",
      escalatedSubtitle: "A person will reply here",
      conversationLabel: "Conversation",
      inputLabel: "Message",
      placeholder: "Write a message\u2026",
      inputHint: "Press Enter to send, Shift+Enter for a new line.",
      send: "Send message",
      typing: "Typing\u2026",
      you: "You",
      agentName: "Support team",
      talkToHuman: "Talk to a human",
      handoffWaiting: "A person from our team will reply here as soon as they can.",
      emailPrompt: "Want a reply by e-mail too? (optional)",
      emailLabel: "E-mail address",
      emailSubmit: "Send",
      emailInvalid: "Please enter a valid e-mail address, like name@example.com.",
      emailSaved: "Thanks! We will also reply to {email}.",
      rateReply: "Was this reply helpful?",
      helpful: "Helpful",
      notHelpful: "Not helpful",
      thanksFeedback: "Thanks for your feedback!",
      csatPrompt: "How would you rate this conversation?",
      csatScore: "{score} out of 5",
      csatComment: "Anything to add? (optional)",
      csatSubmit: "Send rating",
      csatSkip: "No thanks",
      csatThanks: "Thanks for your rating!",
      sources: "Sources",
      retry: "Retry",
      retryIn: "Retry in {seconds} s",
      errorNetwork: "We can't reach support right now. Check your connection and try again.",
      errorRateLimited: "You're sending messages too quickly. Please wait a moment, then try again.",
      errorTooLong: "Your message is too long. Please shorten it and send it again.",
      errorConversationFull: "This conversation has reached its limit. Please start a new conversation.",
      errorIdentity: "We couldn't verify your account. Please reload the page or sign in again.",
      errorServer: "Something went wrong on our side. Your message is still here; please try again.",
      confirm: "Confirm",
      cancel: "Cancel",
      confirmClosed: "This request was already answered or is no longer open.",
      poweredBy: "Powered by supportbot",
    },
    de: {
      launcherOpen: "Support-Chat \u00f6ffnen",
      launcherClose: "Support-Chat schlie\u00dfen",
      unread: "{count} ungelesen",
      close: "Chat schlie\u00dfen",
      newConversation: "Neue Unterhaltung",
      newConversationStarted: "Neue Unterhaltung begonnen.",
      subtitle: "Wir antworten meist sofort",
      escalatedSubtitle: "Ein Mensch antwortet hier",
      conversationLabel: "Unterhaltung",
      inputLabel: "Nachricht",
      placeholder: "Nachricht schreiben\u2026",
      inputHint: "Enter sendet, Umschalt+Enter f\u00fcgt eine neue Zeile ein.",
      send: "Nachricht senden",
      typing: "Schreibt\u2026",
      you: "Sie",
      agentName: "Support-Team",
      talkToHuman: "Mit einem Menschen sprechen",
      handoffWaiting: "Jemand aus unserem Team antwortet hier, sobald es geht.",
      emailPrompt: "Antwort auch per E-Mail? (optional)",
      emailLabel: "E-Mail-Adresse",
      emailSubmit: "Senden",
      emailInvalid: "Bitte geben Sie eine g\u00fcltige E-Mail-Adresse ein, z. B. name@example.com.",
      emailSaved: "Danke! Wir antworten auch an {email}.",
      rateReply: "War diese Antwort hilfreich?",
      helpful: "Hilfreich",
      notHelpful: "Nicht hilfreich",
      thanksFeedback: "Danke f\u00fcr Ihr Feedback!",
      csatPrompt: "Wie bewerten Sie diese Unterhaltung?",
      csatScore: "{score} von 5",
      csatComment: "M\u00f6chten Sie noch etwas erg\u00e4nzen? (optional)",
      csatSubmit: "Bewertung senden",
      csatSkip: "Nein, danke",
      csatThanks: "Danke f\u00fcr Ihre Bewertung!",
      sources: "Quellen",
      retry: "Erneut versuchen",
      retryIn: "Erneut in {seconds} s",
      errorNetwork: "Der Support ist gerade nicht erreichbar. Pr\u00fcfen Sie Ihre Verbindung und versuchen Sie es erneut.",
      errorRateLimited: "Sie senden zu schnell. Bitte warten Sie kurz und versuchen Sie es dann erneut.",
      errorTooLong: "Ihre Nachricht ist zu lang. Bitte k\u00fcrzen Sie sie und senden Sie sie erneut.",
      errorConversationFull: "Diese Unterhaltung ist voll. Bitte beginnen Sie eine neue Unterhaltung.",
      errorIdentity: "Ihr Konto konnte nicht best\u00e4tigt werden. Bitte laden Sie die Seite neu oder melden Sie sich erneut an.",
      errorServer: "Bei uns ist etwas schiefgegangen. Ihre Nachricht ist noch da; bitte versuchen Sie es erneut.",
      confirm: "Best\u00e4tigen",
      cancel: "Abbrechen",
      confirmClosed: "Diese Anfrage wurde schon beantwortet oder ist nicht mehr offen.",
      poweredBy: "Bereitgestellt von supportbot",
    },
    es: {
      launcherOpen: "Abrir el chat de soporte",
      launcherClose: "Cerrar el chat de soporte",
      unread: "{count} sin leer",
      close: "Cerrar el chat",
      newConversation: "Nueva conversaci\u00f3n",
      newConversationStarted: "Nueva conversaci\u00f3n iniciada.",
      subtitle: "Solemos responder al instante",
      escalatedSubtitle: "Una persona te responder\u00e1 aqu\u00ed",
      conversationLabel: "Conversaci\u00f3n",
      inputLabel: "Mensaje",
      placeholder: "Escribe un mensaje\u2026",
      inputHint: "Pulsa Intro para enviar y May\u00fas+Intro para una l\u00ednea nueva.",
      send: "Enviar mensaje",
      typing: "Escribiendo\u2026",
      you: "T\u00fa",
      agentName: "Equipo de soporte",
      talkToHuman: "Hablar con una persona",
      handoffWaiting: "Una persona de nuestro equipo te responder\u00e1 aqu\u00ed lo antes posible.",
      emailPrompt: "\u00bfQuieres recibir tambi\u00e9n la respuesta por correo? (opcional)",
      emailLabel: "Correo electr\u00f3nico",
      emailSubmit: "Enviar",
      emailInvalid: "Introduce un correo electr\u00f3nico v\u00e1lido, por ejemplo nombre@example.com.",
      emailSaved: "\u00a1Gracias! Tambi\u00e9n responderemos a {email}.",
      rateReply: "\u00bfTe ha sido \u00fatil esta respuesta?",
      helpful: "\u00datil",
      notHelpful: "No es \u00fatil",
      thanksFeedback: "\u00a1Gracias por tu opini\u00f3n!",
      csatPrompt: "\u00bfC\u00f3mo valoras esta conversaci\u00f3n?",
      csatScore: "{score} de 5",
      csatComment: "\u00bfAlgo que a\u00f1adir? (opcional)",
      csatSubmit: "Enviar valoraci\u00f3n",
      csatSkip: "No, gracias",
      csatThanks: "\u00a1Gracias por tu valoraci\u00f3n!",
      sources: "Fuentes",
      retry: "Reintentar",
      retryIn: "Reintentar en {seconds} s",
      errorNetwork: "Ahora mismo no podemos conectar con el soporte. Comprueba tu conexi\u00f3n e int\u00e9ntalo de nuevo.",
      errorRateLimited: "Est\u00e1s enviando mensajes demasiado r\u00e1pido. Espera un momento e int\u00e9ntalo de nuevo.",
      errorTooLong: "Tu mensaje es demasiado largo. Ac\u00f3rtalo y vuelve a enviarlo.",
      errorConversationFull: "Esta conversaci\u00f3n ha llegado a su l\u00edmite. Inicia una conversaci\u00f3n nueva.",
      errorIdentity: "No hemos podido verificar tu cuenta. Recarga la p\u00e1gina o vuelve a iniciar sesi\u00f3n.",
      errorServer: "Algo ha fallado por nuestra parte. Tu mensaje sigue aqu\u00ed; int\u00e9ntalo de nuevo.",
      confirm: "Confirmar",
      cancel: "Cancelar",
      confirmClosed: "Esta solicitud ya se respondi\u00f3 o ya no est\u00e1 abierta.",
      poweredBy: "Con la tecnolog\u00eda de supportbot",
    },
    fr: {
      launcherOpen: "Ouvrir le chat d\u2019assistance",
      launcherClose: "Fermer le chat d\u2019assistance",
      unread: "{count} non lu(s)",
      close: "Fermer le chat",
      newConversation: "Nouvelle conversation",
      newConversationStarted: "Nouvelle conversation commenc\u00e9e.",
      subtitle: "Nous r\u00e9pondons g\u00e9n\u00e9ralement tout de suite",
      escalatedSubtitle: "Une personne vous r\u00e9pondra ici",
      conversationLabel: "Conversation",
      inputLabel: "Message",
      placeholder: "\u00c9crivez un message\u2026",
      inputHint: "Entr\u00e9e pour envoyer, Maj+Entr\u00e9e pour une nouvelle ligne.",
      send: "Envoyer le message",
      typing: "En train d\u2019\u00e9crire\u2026",
      you: "Vous",
      agentName: "\u00c9quipe d\u2019assistance",
      talkToHuman: "Parler \u00e0 une personne",
      handoffWaiting: "Une personne de notre \u00e9quipe vous r\u00e9pondra ici d\u00e8s que possible.",
      emailPrompt: "Recevoir aussi la r\u00e9ponse par e-mail ? (facultatif)",
      emailLabel: "Adresse e-mail",
      emailSubmit: "Envoyer",
      emailInvalid: "Veuillez saisir une adresse e-mail valide, par exemple nom@example.com.",
      emailSaved: "Merci ! Nous r\u00e9pondrons aussi \u00e0 {email}.",
      rateReply: "Cette r\u00e9ponse vous a-t-elle aid\u00e9 ?",
      helpful: "Utile",
      notHelpful: "Pas utile",
      thanksFeedback: "Merci pour votre avis !",
      csatPrompt: "Comment \u00e9valuez-vous cette conversation ?",
      csatScore: "{score} sur 5",
      csatComment: "Un commentaire ? (facultatif)",
      csatSubmit: "Envoyer la note",
      csatSkip: "Non merci",
      csatThanks: "Merci pour votre note !",
      sources: "Sources",
      retry: "R\u00e9essayer",
      retryIn: "Nouvel essai dans {seconds} s",
      errorNetwork: "Impossible de joindre l\u2019assistance pour le moment. V\u00e9rifiez votre connexion et r\u00e9essayez.",
      errorRateLimited: "Vous envoyez des messages trop vite. Patientez un instant, puis r\u00e9essayez.",
      errorTooLong: "Votre message est trop long. Raccourcissez-le et renvoyez-le.",
      errorConversationFull: "Cette conversation a atteint sa limite. Veuillez commencer une nouvelle conversation.",
      errorIdentity: "Nous n\u2019avons pas pu v\u00e9rifier votre compte. Rechargez la page ou reconnectez-vous.",
      errorServer: "Un probl\u00e8me est survenu de notre c\u00f4t\u00e9. Votre message est toujours l\u00e0 ; veuillez r\u00e9essayer.",
      confirm: "Confirmer",
      cancel: "Annuler",
      confirmClosed: "Cette demande a d\u00e9j\u00e0 re\u00e7u une r\u00e9ponse ou n\u2019est plus ouverte.",
      poweredBy: "Propuls\u00e9 par supportbot",
    },
    pt: {
      launcherOpen: "Abrir o chat de suporte",
      launcherClose: "Fechar o chat de suporte",
      unread: "{count} n\u00e3o lidas",
      close: "Fechar o chat",
      newConversation: "Nova conversa",
      newConversationStarted: "Nova conversa iniciada.",
      subtitle: "Normalmente respondemos de imediato",
      escalatedSubtitle: "Uma pessoa vai responder aqui",
      conversationLabel: "Conversa",
      inputLabel: "Mensagem",
      placeholder: "Escreva uma mensagem\u2026",
      inputHint: "Prima Enter para enviar e Shift+Enter para uma nova linha.",
      send: "Enviar mensagem",
      typing: "A escrever\u2026",
      you: "Voc\u00ea",
      agentName: "Equipa de suporte",
      talkToHuman: "Falar com uma pessoa",
      handoffWaiting: "Uma pessoa da nossa equipa vai responder aqui assim que poss\u00edvel.",
      emailPrompt: "Quer receber a resposta tamb\u00e9m por e-mail? (opcional)",
      emailLabel: "Endere\u00e7o de e-mail",
      emailSubmit: "Enviar",
      emailInvalid: "Introduza um endere\u00e7o de e-mail v\u00e1lido, por exemplo nome@example.com.",
      emailSaved: "Obrigado! Tamb\u00e9m vamos responder para {email}.",
      rateReply: "Esta resposta foi \u00fatil?",
      helpful: "\u00datil",
      notHelpful: "N\u00e3o foi \u00fatil",
      thanksFeedback: "Obrigado pela sua opini\u00e3o!",
      csatPrompt: "Como avalia esta conversa?",
      csatScore: "{score} de 5",
      csatComment: "Algo a acrescentar? (opcional)",
      csatSubmit: "Enviar avalia\u00e7\u00e3o",
      csatSkip: "N\u00e3o, obrigado",
      csatThanks: "Obrigado pela sua avalia\u00e7\u00e3o!",
      sources: "Fontes",
      retry: "Tentar novamente",
      retryIn: "Nova tentativa em {seconds} s",
      errorNetwork: "N\u00e3o conseguimos contactar o suporte neste momento. Verifique a sua liga\u00e7\u00e3o e tente novamente.",
      errorRateLimited: "Est\u00e1 a enviar mensagens depressa demais. Aguarde um momento e tente novamente.",
      errorTooLong: "A sua mensagem \u00e9 demasiado longa. Encurte-a e envie-a novamente.",
      errorConversationFull: "Esta conversa atingiu o limite. Inicie uma nova conversa.",
      errorIdentity: "N\u00e3o foi poss\u00edvel verificar a sua conta. Recarregue a p\u00e1gina ou inicie sess\u00e3o novamente.",
      errorServer: "Algo correu mal do nosso lado. A sua mensagem continua aqui; tente novamente.",
      confirm: "Confirmar",
      cancel: "Cancelar",
      confirmClosed: "Este pedido j\u00e1 foi respondido ou j\u00e1 n\u00e3o est\u00e1 em aberto.",
      poweredBy: "Com tecnologia supportbot",
    },
    it: {
      launcherOpen: "Apri la chat di assistenza",
      launcherClose: "Chiudi la chat di assistenza",
      unread: "{count} non letti",
      close: "Chiudi la chat",
      newConversation: "Nuova conversazione",
      newConversationStarted: "Nuova conversazione avviata.",
      subtitle: "Di solito rispondiamo subito",
      escalatedSubtitle: "Una persona ti risponder\u00e0 qui",
      conversationLabel: "Conversazione",
      inputLabel: "Messaggio",
      placeholder: "Scrivi un messaggio\u2026",
      inputHint: "Premi Invio per inviare, Maiusc+Invio per andare a capo.",
      send: "Invia messaggio",
      typing: "Sta scrivendo\u2026",
      you: "Tu",
      agentName: "Team di assistenza",
      talkToHuman: "Parla con una persona",
      handoffWaiting: "Una persona del nostro team ti risponder\u00e0 qui appena possibile.",
      emailPrompt: "Vuoi ricevere la risposta anche via e-mail? (facoltativo)",
      emailLabel: "Indirizzo e-mail",
      emailSubmit: "Invia",
      emailInvalid: "Inserisci un indirizzo e-mail valido, ad esempio nome@example.com.",
      emailSaved: "Grazie! Risponderemo anche a {email}.",
      rateReply: "Questa risposta ti \u00e8 stata utile?",
      helpful: "Utile",
      notHelpful: "Non utile",
      thanksFeedback: "Grazie per il tuo feedback!",
      csatPrompt: "Come valuti questa conversazione?",
      csatScore: "{score} su 5",
      csatComment: "Vuoi aggiungere qualcosa? (facoltativo)",
      csatSubmit: "Invia valutazione",
      csatSkip: "No, grazie",
      csatThanks: "Grazie per la tua valutazione!",
      sources: "Fonti",
      retry: "Riprova",
      retryIn: "Nuovo tentativo tra {seconds} s",
      errorNetwork: "Al momento non riusciamo a raggiungere l\u2019assistenza. Controlla la connessione e riprova.",
      errorRateLimited: "Stai inviando messaggi troppo in fretta. Attendi un momento e riprova.",
      errorTooLong: "Il messaggio \u00e8 troppo lungo. Accorcialo e invialo di nuovo.",
      errorConversationFull: "Questa conversazione ha raggiunto il limite. Avvia una nuova conversazione.",
      errorIdentity: "Non \u00e8 stato possibile verificare il tuo account. Ricarica la pagina o accedi di nuovo.",
      errorServer: "Qualcosa \u00e8 andato storto da parte nostra. Il tuo messaggio \u00e8 ancora qui; riprova.",
      confirm: "Conferma",
      cancel: "Annulla",
      confirmClosed: "Questa richiesta ha gi\u00e0 avuto risposta o non \u00e8 pi\u00f9 aperta.",
      poweredBy: "Realizzato con supportbot",
    },
    nl: {
      launcherOpen: "Supportchat openen",
      launcherClose: "Supportchat sluiten",
      unread: "{count} ongelezen",
      close: "Chat sluiten",
      newConversation: "Nieuw gesprek",
      newConversationStarted: "Nieuw gesprek gestart.",
      subtitle: "We antwoorden meestal meteen",
      escalatedSubtitle: "Een medewerker antwoordt hier",
      conversationLabel: "Gesprek",
      inputLabel: "Bericht",
      placeholder: "Schrijf een bericht\u2026",
      inputHint: "Druk op Enter om te versturen, Shift+Enter voor een nieuwe regel.",
      send: "Bericht versturen",
      typing: "Aan het typen\u2026",
      you: "U",
      agentName: "Supportteam",
      talkToHuman: "Met een medewerker praten",
      handoffWaiting: "Een medewerker van ons team antwoordt hier zo snel mogelijk.",
      emailPrompt: "Ook een antwoord per e-mail? (optioneel)",
      emailLabel: "E-mailadres",
      emailSubmit: "Versturen",
      emailInvalid: "Vul een geldig e-mailadres in, zoals naam@example.com.",
      emailSaved: "Bedankt! We antwoorden ook aan {email}.",
      rateReply: "Was dit antwoord nuttig?",
      helpful: "Nuttig",
      notHelpful: "Niet nuttig",
      thanksFeedback: "Bedankt voor uw feedback!",
      csatPrompt: "Hoe beoordeelt u dit gesprek?",
      csatScore: "{score} van 5",
      csatComment: "Wilt u nog iets toevoegen? (optioneel)",
      csatSubmit: "Beoordeling versturen",
      csatSkip: "Nee, bedankt",
      csatThanks: "Bedankt voor uw beoordeling!",
      sources: "Bronnen",
      retry: "Opnieuw proberen",
      retryIn: "Opnieuw over {seconds} s",
      errorNetwork: "We kunnen support nu niet bereiken. Controleer uw verbinding en probeer het opnieuw.",
      errorRateLimited: "U verstuurt te snel berichten. Wacht even en probeer het dan opnieuw.",
      errorTooLong: "Uw bericht is te lang. Maak het korter en verstuur het opnieuw.",
      errorConversationFull: "Dit gesprek heeft de limiet bereikt. Begin een nieuw gesprek.",
      errorIdentity: "We konden uw account niet verifi\u00ebren. Laad de pagina opnieuw of meld u opnieuw aan.",
      errorServer: "Er ging bij ons iets mis. Uw bericht staat er nog; probeer het opnieuw.",
      confirm: "Bevestigen",
      cancel: "Annuleren",
      confirmClosed: "Dit verzoek is al beantwoord of staat niet meer open.",
      poweredBy: "Mogelijk gemaakt door supportbot",
    },
  };

  var script = document.currentScript || document.querySelector('script[src$="/widget.js"]');
  var given = window.SupportBotConfig && typeof window.SupportBotConfig === "object" ? window.SupportBotConfig : {};
  var config = resolveConfig(script ? script.dataset : {}, given);
  var locale = String(config.locale || document.documentElement.lang || navigator.language || "en");
  // The page's language is a first guess: once the service reads the visitor's messages in another language
  // it has built-in strings for, the widget speaks that one, unless the operator set `locale` themselves.
  var localePinned = Boolean(config.locale);
  var language = locale.slice(0, 2).toLowerCase();
  var t = stringsFor(language);
  var identity = { userId: config.userId, userHash: config.userHash };
  var context = cleanContext(config.context);
  var STORE_KEY = "supportbot:" + config.apiBase;
  var OPEN_KEY = STORE_KEY + ":open";

  function stringsFor(code) {
    return Object.assign({}, STRINGS.en, STRINGS[code] || {}, config.strings);
  }

  function resolveConfig(dataset, values) {
    var raw = Object.assign({}, DEFAULTS);
    Object.keys(DEFAULTS).forEach(function (key) {
      if (dataset[key] !== undefined) raw[key] = dataset[key];
      if (values[key] !== undefined) raw[key] = values[key]; // SupportBotConfig wins over data-* attributes
    });
    raw.strings = parseObject(raw.strings);
    raw.context = parseObject(raw.context);
    raw.openOnLoad = raw.openOnLoad === true || raw.openOnLoad === "" || /^(true|1|yes)$/i.test(String(raw.openOnLoad));
    raw.position = raw.position === "bottom-left" ? "bottom-left" : "bottom-right";
    raw.pollInterval = Math.max(250, Number(raw.pollInterval) || DEFAULTS.pollInterval);
    raw.zIndex = Math.round(Number(raw.zIndex)) || DEFAULTS.zIndex;
    raw.primaryColor = window.CSS && CSS.supports("color", String(raw.primaryColor)) ? String(raw.primaryColor)
      : DEFAULTS.primaryColor;
    raw.userId = raw.userId ? String(raw.userId) : "";
    raw.userHash = raw.userHash ? String(raw.userHash) : "";
    raw.onReady = typeof values.onReady === "function" ? values.onReady : null;
    var base = raw.apiBase || (script && script.src ? script.src.replace(/\/widget\.js(?:[?#].*)?$/, "") : "");
    raw.apiBase = String(base || location.origin).replace(/\/+$/, "");
    return raw;
  }

  function parseObject(value) {
    if (value && typeof value === "object") return value;
    if (typeof value !== "string" || !value.trim()) return {};
    try {
      var parsed = JSON.parse(value);
      return parsed && typeof parsed === "object" ? parsed : {};
    } catch (e) {
      return {};
    }
  }

  function cleanContext(values) {
    var clean = {};
    Object.keys(values || {}).forEach(function (key) {
      // Identity goes through identify() / data-user-id and data-user-hash, never through free context.
      if (key === "user_id" || key === "user_hash" || values[key] == null) return;
      clean[key] = String(values[key]);
    });
    return clean;
  }

  function format(template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (match, name) {
      return values[name] !== undefined ? String(values[name]) : match;
    });
  }

  // ---------------------------------------------------------------- storage (conversation id + token)

  function readStored() {
    try {
      var value = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
      return value && typeof value.id === "string" && typeof value.token === "string" ? value : null;
    } catch (e) {
      return null; // storage blocked (privacy mode): the conversation lasts as long as the page
    }
  }

  function writeStored(value) {
    try {
      if (value) localStorage.setItem(STORE_KEY, JSON.stringify(value));
      else localStorage.removeItem(STORE_KEY);
    } catch (e) {
      /* storage blocked: nothing to keep */
    }
  }

  function sessionFlag(value) {
    try {
      if (value === undefined) return sessionStorage.getItem(OPEN_KEY) === "1";
      if (value) sessionStorage.setItem(OPEN_KEY, "1");
      else sessionStorage.removeItem(OPEN_KEY);
    } catch (e) {
      /* storage blocked */
    }
    return false;
  }

  function newId() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes); // randomUUID needs a secure context; getRandomValues does not
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  // ---------------------------------------------------------------- the API

  function ApiError(kind, status, code, message, retryAfter) {
    this.name = "ApiError";
    this.kind = kind; // "network" (no answer, or refused by CORS) or "http"
    this.status = status;
    this.code = code;
    this.message = message || code;
    this.retryAfter = retryAfter;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function retryAfterSeconds(header) {
    if (!header) return 0;
    var seconds = Number(header);
    if (!isNaN(seconds)) return Math.max(0, Math.ceil(seconds));
    var date = Date.parse(header);
    return isNaN(date) ? 0 : Math.max(0, Math.ceil((date - Date.now()) / 1000));
  }

  async function call(method, path, options) {
    options = options || {};
    var headers = { Accept: options.accept || "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (options.token) headers.Authorization = "Bearer " + options.token;
    var response;
    try {
      response = await fetch(config.apiBase + path, {
        method: method,
        headers: headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        credentials: "omit", // bearer tokens only: no cookies ever cross to the service
        cache: "no-store",
        mode: "cors",
      });
    } catch (error) {
      throw new ApiError("network", 0, "network_error", String(error && error.message));
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  async function errorFrom(response) {
    var code = "http_" + response.status;
    var message = "";
    try {
      var body = await response.json();
      if (body && body.error) {
        code = String(body.error.code || code);
        message = String(body.error.message || "");
      }
    } catch (e) {
      /* not our JSON error shape (a proxy's page): the status says enough */
    }
    return new ApiError("http", response.status, code, message, retryAfterSeconds(response.headers.get("Retry-After")));
  }

  function conversationPath(conversation, suffix) {
    return "/api/conversations/" + encodeURIComponent(conversation.id) + (suffix || "");
  }

  async function readEvents(stream, onEvent) {
    var reader = stream.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function dispatch(block) {
      var name = "message";
      var data = [];
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) name = line.slice(6).trim();
        else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
      });
      if (!data.length) return;
      var parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch (e) {
        return;
      }
      onEvent(name, parsed);
    }
    for (;;) {
      var chunk = await reader.read();
      buffer += decoder.decode(chunk.value || new Uint8Array(0), { stream: !chunk.done }).replace(/\r\n/g, "\n");
      var index;
      while ((index = buffer.indexOf("\n\n")) !== -1) {
        dispatch(buffer.slice(0, index));
        buffer = buffer.slice(index + 2);
      }
      if (chunk.done) {
        if (buffer.trim()) dispatch(buffer);
        return;
      }
    }
  }

  async function jsonTurn(conversation, suffix, body) {
    var response = await call("POST", conversationPath(conversation, suffix), { token: conversation.token, body: body });
    return response.json();
  }

  // One turn, streamed when possible. Every fallback resends with the same client_message_id, so the
  // service answers from what it stored instead of storing the message twice.
  function streamTurn(conversation, text, clientId, onText) {
    return postTurn(conversation, "/messages", { content: text, client_message_id: clientId }, onText);
  }

  // POST `body` to the conversation's `suffix` (a message, or a decision on an action) and read the turn it
  // starts: SSE `delta` events then `done`, or JSON. A resend of the same body is answered from what the
  // service stored, so falling back to JSON never does anything twice.
  async function postTurn(conversation, suffix, body, onText) {
    var response;
    try {
      response = await call("POST", conversationPath(conversation, suffix), {
        token: conversation.token, body: body, accept: "text/event-stream",
      });
    } catch (error) {
      if (error.kind !== "network") throw error;
      return jsonTurn(conversation, suffix, body);
    }
    var type = response.headers.get("Content-Type") || "";
    if (type.indexOf("text/event-stream") === -1 || !response.body || !response.body.getReader) {
      return type.indexOf("application/json") !== -1 ? response.json() : jsonTurn(conversation, suffix, body);
    }
    var sofar = "";
    var outcome = null;
    var failure = null;
    try {
      await readEvents(response.body, function (name, data) {
        if (name === "delta" && data && typeof data.text === "string") {
          sofar += data.text;
          onText(sofar);
        } else if (name === "done") {
          outcome = data;
        } else if (name === "error") {
          failure = (data && data.error) || {};
        }
      });
    } catch (e) {
      /* the stream broke half way: ask the JSON endpoint below */
    }
    if (outcome) return outcome;
    if (failure) throw new ApiError("http", 500, String(failure.code || "stream_error"), failure.message);
    return jsonTurn(conversation, suffix, body);
  }

  // ---------------------------------------------------------------- safe Markdown

  // Bot output is untrusted. It is turned into DOM nodes with createElement/textContent (raw HTML in it
  // stays text), links keep only http(s)/mailto targets, images are never loaded, and DOMPurify checks
  // the result against the same allow-list before it is shown.
  var PURIFY_CONFIG = {
    ALLOWED_TAGS: ["p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "a"],
    ALLOWED_ATTR: ["href", "target", "rel", "start", "class"],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
    ADD_URI_SAFE_ATTR: ["target", "rel", "start"], // not URLs: exempt from the scheme check above
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  };
  var BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
  var ORDERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
  var FENCE = /^\s{0,3}(```|~~~)/;
  var HEADING = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/;
  // A link target may hold one level of balanced parentheses, as in (javascript:alert(1)) or Wikipedia URLs.
  // Underscore emphasis is left out on purpose: it turns identifiers like window.__name into bold text.
  var TARGET = "\\(\\s*<?((?:[^()\\s<>]|\\([^()\\s]*\\))*)>?(?:\\s+\"[^\"]*\")?\\s*\\)";
  var INLINE = new RegExp([
    "(`+)([^`]|[^`][\\s\\S]*?[^`])\\1(?!`)", // 1-2 code span
    "!\\[([^\\]]*)\\]" + TARGET, // 3-4 image: shown as a link, never loaded
    "\\[([^\\]]+)\\]" + TARGET, // 5-6 link
    "\\*\\*(?=\\S)([\\s\\S]*?\\S)\\*\\*", // 7 bold
    "\\*(?=[^\\s*])([^*]*?[^\\s*])\\*", // 8 italic
    "(https?:\\/\\/[^\\s<>()\\[\\]]*[^\\s<>()\\[\\].,;:!?'\"])", // 9 bare URL
  ].join("|"), "g");

  function safeUrl(raw) {
    try {
      var url = new URL(String(raw).trim()); // relative URLs throw: they mean nothing on the host page
      return /^(https?:|mailto:)$/.test(url.protocol) ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  // A source may be an http(s) URL or a path on the customer's own site ("/help/refunds"), which is resolved
  // against the page the widget runs on. Anything else (javascript:, data:, "//other.host") is shown as text.
  function sourceUrl(raw) {
    var text = String(raw || "").trim();
    var relative = /^\/(?![\/\\])/.test(text);
    if (/[\s\\]/.test(text)) return null; // a backslash reads as "/" in URLs: "/\evil.example" is another host
    try {
      var url = relative ? new URL(text, location.href) : new URL(text);
      return /^https?:$/.test(url.protocol) ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  // Sources without a page (hand-written entries with no `url:`) are left out: the reply already is their text.
  function sourcesElement(sources) {
    var list = (Array.isArray(sources) ? sources : []).filter(function (source) {
      return source && typeof source.title === "string" && source.title.trim() && typeof source.url === "string";
    }).slice(0, 5);
    if (!list.length) return null;
    // A list by its ARIA roles: <ul>/<li> would mix with the lists of the reply's own Markdown.
    return h("div", { class: "sb-sources" }, [
      h("span", { class: "sb-sources-label", text: t.sources + ": " }),
      h("span", { role: "list", "aria-label": t.sources }, list.map(function (source) {
        var url = sourceUrl(source.url);
        return h("span", { class: "sb-source", role: "listitem" },
          url ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, source.title) : source.title);
      })),
    ]);
  }

  function link(href, label) {
    var url = safeUrl(href);
    if (!url) return document.createTextNode(label);
    return h("a", { href: url, target: "_blank", rel: "noopener noreferrer nofollow ugc" }, label);
  }

  function inline(text) {
    var fragment = document.createDocumentFragment();
    var last = 0;
    var match;
    var pattern = new RegExp(INLINE.source, "g"); // own instance: inline() recurses for bold and italic
    while ((match = pattern.exec(text)) !== null) {
      if (match.index > last) fragment.append(text.slice(last, match.index));
      if (match[1]) fragment.append(h("code", null, match[2]));
      else if (match[4] !== undefined && match[0].charAt(0) === "!") fragment.append(link(match[4], match[3] || match[4]));
      else if (match[5] !== undefined) fragment.append(link(match[6], match[5]));
      else if (match[7] !== undefined) fragment.append(h("strong", null, inline(match[7])));
      else if (match[8] !== undefined) fragment.append(h("em", null, inline(match[8])));
      else if (match[9]) fragment.append(link(match[9], match[9]));
      last = pattern.lastIndex;
    }
    if (last < text.length) fragment.append(text.slice(last));
    return fragment;
  }

  function startsBlock(line) {
    return FENCE.test(line) || BULLET.test(line) || ORDERED.test(line) || HEADING.test(line);
  }

  function renderMarkdown(source) {
    var fragment = document.createDocumentFragment();
    var lines = String(source).replace(/\r\n?/g, "\n").split("\n");
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];
      if (!line.trim()) {
        i += 1;
      } else if (FENCE.test(line)) {
        var code = [];
        i += 1;
        while (i < lines.length && !FENCE.test(lines[i])) code.push(lines[i++]);
        i += 1;
        fragment.append(h("pre", null, h("code", null, code.join("\n"))));
      } else if (BULLET.test(line) || ORDERED.test(line)) {
        var ordered = !BULLET.test(line);
        var pattern = ordered ? ORDERED : BULLET;
        var list = h(ordered ? "ol" : "ul");
        var first = ordered ? Number(ORDERED.exec(line)[1]) : 1;
        if (first !== 1) list.setAttribute("start", String(first));
        while (i < lines.length && pattern.test(lines[i])) {
          var item = pattern.exec(lines[i]);
          var text = ordered ? item[2] : item[1];
          i += 1;
          while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !startsBlock(lines[i])) text += " " + lines[i++].trim();
          list.append(h("li", null, inline(text)));
        }
        fragment.append(list);
      } else if (HEADING.test(line)) {
        fragment.append(h("p", null, h("strong", null, inline(HEADING.exec(line)[1]))));
        i += 1;
      } else {
        var paragraph = h("p");
        var count = 0;
        while (i < lines.length && lines[i].trim() && (count === 0 || !startsBlock(lines[i]))) {
          if (count) paragraph.append(h("br"));
          paragraph.append(inline(lines[i].trim()));
          count += 1;
          i += 1;
        }
        fragment.append(paragraph);
      }
    }
    return fragment;
  }

  function renderBotText(text) {
    var fragment = renderMarkdown(text);
    if (purifier && typeof purifier.sanitize === "function" && purifier.isSupported !== false) {
      return purifier.sanitize(fragment, PURIFY_CONFIG);
    }
    return fragment;
  }

  // ---------------------------------------------------------------- DOM helpers

  var ICONS = {
    chat: "M12 3C6.48 3 2 6.92 2 11.75c0 2.47 1.17 4.7 3.06 6.29-.2 1.5-.92 2.85-2.06 3.96 2.27.08 4.3-.63 " +
      "5.8-1.86 1 .28 2.08.43 3.2.43 5.52 0 10-3.92 10-8.82S17.52 3 12 3z",
    chevronDown: "M6 9l6 6 6-6",
    close: "M18 6L6 18M6 6l12 12",
    compose: "M12 20h9M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4L16.5 3.5z",
    send: "M12 19V5M5 12l7-7 7 7",
    person: "M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2M16 7a4 4 0 1 1-8 0 4 4 0 0 1 8 0z",
    thumbsUp: "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3H14zM7 22H4a2 2 0 " +
      "0 1-2-2v-7a2 2 0 0 1 2-2h3",
    thumbsDown: "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3H10zM17 2h2.67A2.31 " +
      "2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
    alert: "M12 22a10 10 0 1 1 0-20 10 10 0 0 1 0 20zM12 8v4M12 16h.01",
    star: "M12 2.5l2.94 5.96 6.56.95-4.75 4.63 1.12 6.54L12 17.5l-5.87 3.08 1.12-6.54L2.5 9.41l6.56-.95z",
  };

  function h(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) {
      var value = attributes[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    });
    [].concat(children === undefined || children === null ? [] : children).forEach(function (child) {
      if (child !== null && child !== undefined) node.append(child); // strings become text nodes
    });
    return node;
  }

  function icon(name, extraClass) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "sb-icon" + (extraClass ? " " + extraClass : ""));
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name]);
    svg.append(path);
    return svg;
  }

  var CSS_TEXT = [
    // The host element ignores every rule of the host page (important rules of a shadow tree win over the
    // page's); theming goes through the --sb-* custom properties, which the page may set on the element.
    ":host { all: initial !important; --sb-primary: #4f46e5; --sb-on-primary: #ffffff; --sb-text: #111827;",
    "  --sb-muted: #6b7280; --sb-border: #e5e7eb; --sb-surface: #f6f7fb; --sb-panel: #ffffff;",
    "  --sb-bot-bubble: #ffffff; --sb-agent-bubble: #fff8eb; --sb-agent-border: #f3d9a4; --sb-danger: #b42318;",
    "  --sb-danger-bg: #fef3f2; --sb-focus: #2563eb; --sb-radius: 16px; --sb-z: 2147483000;",
    "  --sb-font: -apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif;",
    "  --sb-mono: ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace; }",
    ".sb-root { all: initial; display: block; font-family: var(--sb-font); font-size: 14px; line-height: 1.5;",
    "  font-weight: 400; color: var(--sb-text); direction: ltr; text-align: left; letter-spacing: normal;",
    "  -webkit-font-smoothing: antialiased; -moz-osx-font-smoothing: grayscale; }",
    ".sb-root *, .sb-root *::before, .sb-root *::after { box-sizing: border-box; }",
    ".sb-root[hidden], .sb-root [hidden] { display: none !important; }",
    ".sb-root button, .sb-root input, .sb-root textarea { font: inherit; color: inherit; margin: 0; }",
    ".sb-root button { cursor: pointer; -webkit-tap-highlight-color: transparent; }",
    ".sb-root :focus-visible { outline: 2px solid var(--sb-focus); outline-offset: 2px; }",
    ".sb-sr { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;",
    "  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }",
    ".sb-icon { display: block; flex: none; width: 20px; height: 20px; fill: none; stroke: currentColor;",
    "  stroke-width: 2; stroke-linecap: round; stroke-linejoin: round; }",
    ".sb-probe { position: absolute; color: var(--sb-primary); }",

    ".sb-launcher { position: fixed; bottom: 20px; right: 20px; z-index: var(--sb-z); width: 60px; height: 60px;",
    "  padding: 0; border: 0; border-radius: 50%; background: var(--sb-primary); color: var(--sb-on-primary);",
    "  display: grid; place-items: center; box-shadow: 0 6px 20px rgba(17, 24, 39, .25), 0 2px 6px rgba(17, 24, 39, .12);",
    "  transition: transform .16s ease, box-shadow .16s ease; }",
    ".sb-launcher:hover { transform: scale(1.06); box-shadow: 0 10px 28px rgba(17, 24, 39, .3); }",
    ".sb-launcher:focus-visible { outline: 3px solid var(--sb-focus); outline-offset: 3px; }",
    ".sb-launcher .sb-icon { width: 28px; height: 28px; }",
    ".sb-launcher .sb-icon-chat { fill: currentColor; stroke: none; }",
    ".sb-launcher .sb-icon-close, .sb-open .sb-launcher .sb-icon-chat { display: none; }",
    ".sb-open .sb-launcher .sb-icon-close { display: block; }",
    ".sb-badge { position: absolute; top: -3px; right: -3px; min-width: 20px; height: 20px; padding: 0 6px;",
    "  border-radius: 10px; background: #ef4444; color: #fff; font-size: 12px; font-weight: 700; line-height: 20px;",
    "  text-align: center; box-shadow: 0 0 0 2px #fff; }",
    "[data-position='bottom-left'] .sb-launcher { right: auto; left: 20px; }",

    ".sb-panel { position: fixed; bottom: 92px; right: 20px; z-index: var(--sb-z); width: 380px;",
    "  height: min(640px, calc(100vh - 116px)); min-height: 320px; display: flex; flex-direction: column;",
    "  background: var(--sb-panel); border-radius: var(--sb-radius); overflow: hidden;",
    "  box-shadow: 0 18px 50px rgba(17, 24, 39, .22), 0 3px 10px rgba(17, 24, 39, .08);",
    "  opacity: 0; transform: translateY(16px) scale(.98); transform-origin: bottom right; visibility: hidden;",
    "  transition: opacity .2s ease, transform .2s ease, visibility 0s linear .2s; }",
    "[data-position='bottom-left'] .sb-panel { right: auto; left: 20px; transform-origin: bottom left; }",
    ".sb-open .sb-panel { opacity: 1; transform: none; visibility: visible; transition-delay: 0s; }",

    ".sb-header { flex: none; display: flex; align-items: center; gap: 12px; padding: 16px 10px 16px 18px;",
    "  background: var(--sb-primary); color: var(--sb-on-primary);",
    "  background: linear-gradient(135deg, var(--sb-primary) 0%, color-mix(in srgb, var(--sb-primary) 74%, #000) 100%); }",
    ".sb-header :focus-visible { outline-color: var(--sb-on-primary); }",
    ".sb-avatar { flex: none; width: 40px; height: 40px; border-radius: 50%; display: grid; place-items: center;",
    "  background: rgba(255, 255, 255, .2); }",
    ".sb-avatar .sb-icon { width: 22px; height: 22px; fill: currentColor; stroke: none; }",
    ".sb-heading { flex: 1; min-width: 0; }",
    ".sb-title { margin: 0; font-size: 16px; font-weight: 700; line-height: 1.3; white-space: nowrap; overflow: hidden;",
    "  text-overflow: ellipsis; }",
    ".sb-subtitle { margin: 2px 0 0; display: flex; align-items: center; gap: 6px; font-size: 12.5px; opacity: .9; }",
    ".sb-subtitle span:last-child { min-width: 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }",
    ".sb-dot { flex: none; width: 8px; height: 8px; border-radius: 50%; background: #34d399;",
    "  box-shadow: 0 0 0 2px rgba(255, 255, 255, .3); }",
    ".sb-escalated .sb-dot { background: #fbbf24; }",
    ".sb-icon-button { flex: none; width: 36px; height: 36px; padding: 0; border: 0; border-radius: 10px;",
    "  background: transparent; display: grid; place-items: center; }",
    ".sb-icon-button:hover { background: rgba(255, 255, 255, .18); }",

    ".sb-log { flex: 1; min-height: 0; overflow-y: auto; overscroll-behavior: contain; padding: 18px 14px 10px;",
    "  display: flex; flex-direction: column; gap: 12px; background: var(--sb-surface); }",
    ".sb-log:focus-visible { outline-offset: -2px; }",
    ".sb-msg { display: flex; flex-direction: column; max-width: 86%; }",
    ".sb-msg--user { align-self: flex-end; align-items: flex-end; }",
    ".sb-msg--assistant, .sb-msg--agent { align-self: flex-start; align-items: flex-start; }",
    ".sb-bubble { padding: 9px 14px; border-radius: 18px; overflow-wrap: anywhere; min-width: 0; max-width: 100%; }",
    ".sb-msg--user .sb-bubble { background: var(--sb-primary); color: var(--sb-on-primary); border-bottom-right-radius: 6px;",
    "  white-space: pre-wrap; }",
    ".sb-msg--assistant .sb-bubble { background: var(--sb-bot-bubble); border: 1px solid var(--sb-border);",
    "  border-bottom-left-radius: 6px; box-shadow: 0 1px 2px rgba(17, 24, 39, .05); }",
    ".sb-msg--agent .sb-bubble { background: var(--sb-agent-bubble); border: 1px solid var(--sb-agent-border);",
    "  border-bottom-left-radius: 6px; }",
    ".sb-msg--pending .sb-bubble { opacity: .75; }",
    ".sb-author { display: flex; align-items: center; gap: 5px; margin: 0 0 4px 4px; font-size: 12px;",
    "  font-weight: 600; color: #92400e; }",
    ".sb-author .sb-icon { width: 14px; height: 14px; }",
    ".sb-bubble p { margin: 0 0 8px; } .sb-bubble > :last-child { margin-bottom: 0; }",
    ".sb-bubble ul, .sb-bubble ol { margin: 0 0 8px; padding-left: 20px; } .sb-bubble li { margin: 2px 0; }",
    ".sb-bubble strong { font-weight: 700; } .sb-bubble em { font-style: italic; }",
    ".sb-bubble code { font-family: var(--sb-mono); font-size: 12.5px; padding: 1px 5px; border-radius: 5px;",
    "  background: rgba(17, 24, 39, .07); }",
    ".sb-bubble pre { margin: 0 0 8px; padding: 10px 12px; border-radius: 10px; overflow-x: auto; white-space: pre;",
    "  background: #0f172a; color: #e2e8f0; }",
    ".sb-bubble pre code { padding: 0; background: none; color: inherit; }",
    ".sb-bubble a { color: var(--sb-primary); text-decoration: underline; text-underline-offset: 2px; }",
    ".sb-msg--user .sb-bubble a { color: inherit; }",
    ".sb-typing { display: inline-flex; gap: 4px; padding: 6px 0; }",
    ".sb-typing span { width: 7px; height: 7px; border-radius: 50%; background: #9ca3af; animation: sb-bounce 1.2s infinite ease-in-out; }",
    ".sb-typing span:nth-child(2) { animation-delay: .15s; } .sb-typing span:nth-child(3) { animation-delay: .3s; }",
    "@keyframes sb-bounce { 0%, 60%, 100% { transform: translateY(0); opacity: .45; } 30% { transform: translateY(-4px); opacity: 1; } }",
    ".sb-feedback { display: flex; align-items: center; gap: 2px; margin: 3px 0 0 4px; font-size: 12px; color: var(--sb-muted); }",
    ".sb-feedback button { width: 28px; height: 28px; padding: 0; border: 0; border-radius: 8px; background: transparent;",
    "  color: #9ca3af; display: grid; place-items: center; }",
    ".sb-feedback button .sb-icon { width: 15px; height: 15px; }",
    ".sb-feedback button:hover { background: rgba(17, 24, 39, .06); color: var(--sb-text); }",
    ".sb-feedback button[aria-pressed='true'] { color: var(--sb-primary); background: color-mix(in srgb, var(--sb-primary) 12%, transparent); }",
    ".sb-feedback button[aria-pressed='true'] .sb-icon { fill: color-mix(in srgb, var(--sb-primary) 25%, transparent); }",
    ".sb-feedback-thanks { margin-left: 4px; }",
    ".sb-sources { margin: 4px 0 0 4px; font-size: 12px; color: var(--sb-muted); max-width: 100%; overflow-wrap: anywhere; }",
    ".sb-source + .sb-source::before { content: \" \\00b7  \"; }",
    ".sb-sources a { color: var(--sb-primary); text-decoration: underline; text-underline-offset: 2px; }",
    ".sb-confirm { margin: 6px 0 0; padding: 10px 12px; max-width: 100%; border: 1px solid var(--sb-border);",
    "  border-radius: 12px; background: var(--sb-panel); }",
    ".sb-confirm-summary { margin: 0 0 8px; font-weight: 600; white-space: pre-wrap; overflow-wrap: anywhere; }",
    ".sb-confirm-row { display: flex; flex-wrap: wrap; gap: 8px; }",
    ".sb-confirm-cancel { flex: none; height: 36px; padding: 0 16px; border: 1px solid var(--sb-border); border-radius: 10px;",
    "  background: var(--sb-panel); color: var(--sb-text); font-weight: 600; }",
    ".sb-root .sb-button { color: var(--sb-on-primary); } /* over .sb-root button's inherited colour */",
    ".sb-confirm button:disabled { opacity: .6; cursor: default; }",
    ".sb-confirm-closed { margin: 0; color: var(--sb-muted); }",

    ".sb-handoff { flex: none; padding: 12px 16px; border-top: 1px solid #fde68a; background: #fffbeb; color: #78350f; font-size: 13px; }",
    ".sb-handoff-title { margin: 0; display: flex; align-items: center; gap: 8px; font-weight: 600; }",
    ".sb-handoff-title .sb-icon { width: 16px; height: 16px; }",
    ".sb-contact { margin: 8px 0 0; }",
    ".sb-contact label { display: block; margin: 0 0 6px; }",
    ".sb-contact-row { display: flex; gap: 8px; }",
    ".sb-contact input { flex: 1; min-width: 0; height: 36px; padding: 0 10px; border: 1px solid #e5d3a1; border-radius: 10px;",
    "  background: #fff; color: var(--sb-text); font-size: 14px; }",
    ".sb-contact input[aria-invalid='true'] { border-color: var(--sb-danger); }",
    ".sb-field-error { margin: 6px 0 0; color: var(--sb-danger); }",
    ".sb-contact-done { margin: 6px 0 0; }",
    ".sb-button { flex: none; height: 36px; padding: 0 16px; border: 0; border-radius: 10px; background: var(--sb-primary);",
    "  color: var(--sb-on-primary); font-weight: 600; }",

    ".sb-csat { flex: none; padding: 12px 16px; border-top: 1px solid var(--sb-border); background: var(--sb-surface); font-size: 13px; }",
    ".sb-csat-title { margin: 0 0 6px; font-weight: 600; }",
    ".sb-stars { display: flex; gap: 4px; margin: 0 0 8px; }",
    ".sb-stars button { width: 34px; height: 34px; padding: 0; border: 0; border-radius: 8px; background: transparent; color: var(--sb-muted); }",
    ".sb-stars button .sb-icon { width: 24px; height: 24px; }",
    ".sb-stars button:hover, .sb-stars button.sb-lit { color: #d97706; }",
    ".sb-stars button.sb-lit .sb-icon { fill: currentColor; }",
    ".sb-csat label { display: block; margin: 0 0 4px; }",
    ".sb-csat textarea { box-sizing: border-box; width: 100%; min-height: 52px; padding: 6px 10px; border: 1px solid var(--sb-border);",
    "  border-radius: 10px; background: #fff; color: var(--sb-text); font: inherit; resize: vertical; }",
    ".sb-csat-row { display: flex; gap: 8px; margin-top: 8px; }",
    ".sb-csat-skip { height: 36px; padding: 0 12px; border: 0; border-radius: 10px; background: transparent; color: var(--sb-muted); }",
    ".sb-button:disabled { opacity: .6; cursor: default; }",
    ".sb-csat-thanks { margin: 0; font-weight: 600; }",
    // Asked as the chat closes: a card above the launcher, clear of it, while the panel is away.
    ".sb-csat--float { position: fixed; bottom: 92px; right: 20px; z-index: var(--sb-z); width: min(320px, calc(100vw - 40px));",
    "  border: 1px solid var(--sb-border); border-radius: var(--sb-radius); background: var(--sb-panel); color: var(--sb-text);",
    "  box-shadow: 0 12px 32px rgba(17, 24, 39, .18); }",
    "[data-position='bottom-left'] .sb-csat--float { right: auto; left: 20px; }",

    ".sb-error { flex: none; display: flex; align-items: center; gap: 10px; padding: 10px 14px; border-top: 1px solid #fecdca;",
    "  background: var(--sb-danger-bg); color: var(--sb-danger); font-size: 13px; }",
    ".sb-error-text { flex: 1; margin: 0; }",
    ".sb-error-retry { flex: none; height: 30px; padding: 0 12px; border: 1px solid #fda29b; border-radius: 8px;",
    "  background: #fff; color: var(--sb-danger); font-weight: 600; }",
    ".sb-error-retry:disabled { opacity: .6; cursor: default; }",

    ".sb-composer { flex: none; display: flex; align-items: flex-end; gap: 8px; padding: 10px 10px 8px 16px;",
    "  border-top: 1px solid var(--sb-border); background: var(--sb-panel); }",
    ".sb-composer:focus-within { border-top-color: var(--sb-primary); box-shadow: inset 0 1px 0 var(--sb-primary); }",
    ".sb-input { flex: 1; min-width: 0; height: 40px; max-height: 120px; padding: 10px 0; border: 0; outline: none; resize: none;",
    "  background: transparent; color: var(--sb-text); font-size: 14px; line-height: 20px; }",
    ".sb-input::placeholder { color: #9ca3af; }",
    ".sb-root .sb-input:focus-visible { outline: none; } /* the composer's top line shows focus */",
    ".sb-send { flex: none; width: 40px; height: 40px; padding: 0; border: 0; border-radius: 12px; display: grid;",
    "  place-items: center; background: var(--sb-primary); color: var(--sb-on-primary); transition: background .15s ease; }",
    ".sb-send:disabled { background: #eef0f4; color: #a3a9b6; cursor: default; }",
    ".sb-footer { flex: none; display: flex; align-items: center; justify-content: space-between; gap: 8px;",
    "  padding: 0 12px 10px 12px; background: var(--sb-panel); }",
    ".sb-human { display: inline-flex; align-items: center; gap: 6px; height: 30px; padding: 0 12px 0 10px;",
    "  border: 1px solid var(--sb-border); border-radius: 999px; background: var(--sb-panel); color: var(--sb-text);",
    "  font-size: 12.5px; font-weight: 600; }",
    ".sb-human:hover { border-color: var(--sb-primary); color: var(--sb-primary); }",
    ".sb-human .sb-icon { width: 15px; height: 15px; }",
    ".sb-human:disabled { opacity: .6; cursor: default; }",
    ".sb-powered { font-size: 11px; color: #a3a9b6; }",

    // Phones: the panel takes the whole screen, and a 16 px input keeps iOS from zooming in.
    "@media (max-width: 480px) {",
    "  .sb-panel { inset: 0; width: 100%; height: 100%; height: 100dvh; min-height: 0; border-radius: 0; transform: translateY(24px); }",
    "  [data-position='bottom-left'] .sb-panel { left: 0; }",
    "  .sb-open .sb-launcher { display: none; }",
    "  .sb-input { font-size: 16px; }",
    "  .sb-msg { max-width: 90%; }",
    "}",
    "@media (prefers-reduced-motion: reduce) {",
    "  .sb-panel, .sb-launcher { transition: none; } .sb-typing span { animation: none; opacity: .7; }",
    "}",
  ].join("\n");

  // ---------------------------------------------------------------- the widget

  var state = {
    conversation: null, // {id, token, userId, contact, ratings} as kept in localStorage
    status: "new", // new | open | escalated | resolved
    open: false,
    busy: false,
    sendSeq: 0,
    draft: null, // {text, clientId}: a retry of the same text reuses its client_message_id
    unread: 0,
    pollTimer: 0,
    retryTimer: 0,
    retry: null,
    handoffBusy: false,
    answered: false, // a bot or agent answer is on screen: the conversation can be rated
  };
  var known = new Set(); // ids of the messages on screen
  var listeners = {};
  var ui = {};

  function build() {
    ui.host = document.createElement("supportbot-widget");
    ui.shadow = ui.host.attachShadow({ mode: "open" });
    var sheet = null;
    try {
      sheet = new CSSStyleSheet(); // constructed sheets are CSSOM: allowed under a strict style-src CSP
      sheet.replaceSync(CSS_TEXT);
      ui.shadow.adoptedStyleSheets = [sheet];
    } catch (e) {
      sheet = null;
      ui.shadow.append(h("style", { text: CSS_TEXT }));
    }
    ui.sheet = sheet;

    ui.badge = h("span", { class: "sb-badge", "aria-hidden": "true", hidden: true });
    ui.launcher = h("button", {
      type: "button", class: "sb-launcher", "aria-controls": "sb-panel", "aria-expanded": "false",
      "aria-label": t.launcherOpen, onclick: function () { toggle(); },
    }, [icon("chat", "sb-icon-chat"), icon("chevronDown", "sb-icon-close"), ui.badge]);

    ui.subtitle = h("span", { text: config.subtitle || t.subtitle });
    ui.newButton = h("button", {
      type: "button", class: "sb-icon-button", "aria-label": t.newConversation, title: t.newConversation,
      onclick: function () { newConversation(); },
    }, icon("compose"));
    var header = h("div", { class: "sb-header" }, [
      h("div", { class: "sb-avatar", "aria-hidden": "true" }, icon("chat")),
      h("div", { class: "sb-heading" }, [
        h("h2", { id: "sb-title", class: "sb-title", text: config.title }),
        h("p", { class: "sb-subtitle" }, [h("span", { class: "sb-dot", "aria-hidden": "true" }), ui.subtitle]),
      ]),
      ui.newButton,
      ui.closeButton = h("button", {
        type: "button", class: "sb-icon-button", "aria-label": t.close, title: t.close,
        onclick: function () { close(true); },
      }, icon("close")),
    ]);

    ui.log = h("div", { class: "sb-log", role: "log", "aria-label": t.conversationLabel, "aria-live": "off", tabindex: "0" });
    if (config.greeting) {
      var greeting = messageElement({ role: "assistant", content: config.greeting });
      greeting.classList.add("sb-greeting");
      ui.log.append(greeting);
    }

    ui.contactInput = h("input", {
      id: "sb-email", type: "email", autocomplete: "email", inputmode: "email", placeholder: "name@example.com",
      "aria-describedby": "sb-email-error", maxlength: "320",
    });
    ui.contactError = h("p", { id: "sb-email-error", class: "sb-field-error", hidden: true });
    ui.contactForm = h("form", { class: "sb-contact", novalidate: true, onsubmit: submitContact }, [
      ui.contactLabel = h("label", { for: "sb-email", text: t.emailPrompt }),
      h("div", { class: "sb-contact-row" }, [
        ui.contactInput, ui.contactSubmit = h("button", { type: "submit", class: "sb-button", text: t.emailSubmit }),
      ]),
      ui.contactError,
    ]);
    ui.contactDone = h("p", { class: "sb-contact-done", hidden: true });
    ui.handoff = h("div", { class: "sb-handoff", hidden: true }, [
      h("p", { class: "sb-handoff-title" }, [icon("person"), ui.handoffTitle = h("span", { text: t.handoffWaiting })]),
      ui.contactForm, ui.contactDone,
    ]);

    ui.errorText = h("p", { class: "sb-error-text" });
    ui.retryButton = h("button", { type: "button", class: "sb-error-retry", onclick: retryAfterError });
    ui.error = h("div", { class: "sb-error", role: "alert", hidden: true }, [icon("alert"), ui.errorText, ui.retryButton]);

    ui.input = h("textarea", {
      id: "sb-input", class: "sb-input", rows: "1", placeholder: t.placeholder, "aria-label": t.inputLabel,
      "aria-describedby": "sb-hint", autocomplete: "off", enterkeyhint: "send",
      onkeydown: onInputKey, oninput: onInputChange,
    });
    ui.send = h("button", { type: "submit", class: "sb-send", "aria-label": t.send, title: t.send, disabled: true }, icon("send"));
    var composer = h("form", {
      class: "sb-composer", onsubmit: function (event) { event.preventDefault(); send(); },
    }, [ui.input, ui.hint = h("span", { id: "sb-hint", class: "sb-sr", text: t.inputHint }), ui.send]);

    ui.human = h("button", {
      type: "button", class: "sb-human", onclick: function () { requestHandoff(); },
    }, [icon("person"), ui.humanLabel = h("span", { text: t.talkToHuman })]);
    ui.powered = h("span", { class: "sb-powered", text: t.poweredBy });
    var footer = h("div", { class: "sb-footer" }, [ui.human, ui.powered]);

    ui.announcer = h("div", { class: "sb-sr", role: "status", "aria-live": "polite", "aria-atomic": "true" });
    ui.panel = h("div", {
      id: "sb-panel", class: "sb-panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "sb-title",
      onkeydown: function (event) { if (event.key === "Escape") { event.stopPropagation(); close(true); } },
    }, [header, ui.log, ui.handoff, ui.error, composer, footer, ui.announcer]);
    ui.csatLive = h("span", { class: "sb-sr", "aria-live": "polite" }); // the panel's announcer is hidden with it
    ui.csatBody = h("div");
    ui.csatTitle = h("p", { id: "sb-csat-title", class: "sb-csat-title" });
    ui.csat = h("section", { class: "sb-csat", "aria-labelledby": "sb-csat-title", hidden: true },
      [ui.csatTitle, ui.csatBody, ui.csatLive]);

    ui.probe = h("span", { class: "sb-probe", "aria-hidden": "true" });
    ui.root = h("div", { class: "sb-root", "data-position": config.position, lang: locale },
      [ui.launcher, ui.panel, ui.csat, ui.probe]);
    ui.shadow.append(ui.root);
    document.body.append(ui.host);
    applyTheme();
  }

  function applyTheme() {
    var rule = null;
    var rules = ui.sheet ? ui.sheet.cssRules : (ui.shadow.querySelector("style") || {}).sheet.cssRules;
    for (var i = 0; i < rules.length; i += 1) {
      if (rules[i].selectorText === ":host") rule = rules[i];
    }
    if (!rule) return;
    // Through the CSSOM, not by building CSS text: a configured value cannot inject rules.
    rule.style.setProperty("--sb-primary", config.primaryColor);
    rule.style.setProperty("--sb-z", String(config.zIndex));
    var rgb = (getComputedStyle(ui.probe).color.match(/[\d.]+/g) || [0, 0, 0]).slice(0, 3).map(Number);
    var luminance = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255;
    rule.style.setProperty("--sb-on-primary", luminance > 0.62 ? "#111827" : "#ffffff");
  }

  function messageElement(message) {
    var role = message.role === "user" ? "user" : message.role === "agent" ? "agent" : "assistant";
    var wrapper = h("div", { class: "sb-msg sb-msg--" + role });
    // An agent's reply carries the person's name; older transcripts without one show the team's.
    var agentName = role === "agent" && message.author ? String(message.author) : t.agentName;
    var speaker = role === "user" ? t.you : role === "agent" ? agentName : config.title;
    if (role === "agent") wrapper.append(h("span", { class: "sb-author" }, [icon("person"), agentName]));
    else wrapper.append(h("span", { class: "sb-sr", text: speaker + ": " }));
    var bubble = h("div", { class: "sb-bubble" });
    if (role === "user") bubble.textContent = message.content;
    else bubble.append(renderBotText(message.content));
    wrapper.append(bubble);
    if (role === "assistant") showSources(wrapper, message.sources);
    if (message.id !== undefined && message.id !== null) {
      wrapper.setAttribute("data-id", String(message.id));
      known.add(message.id);
    }
    return wrapper;
  }

  function typingElement() {
    var wrapper = h("div", { class: "sb-msg sb-msg--assistant sb-msg--typing" }, [
      h("div", { class: "sb-bubble" }, h("span", { class: "sb-typing", role: "img", "aria-label": t.typing },
        [h("span"), h("span"), h("span")])),
    ]);
    wrapper.frame = 0;
    return wrapper;
  }

  function showBotText(wrapper, text) {
    var bubble = wrapper.querySelector(".sb-bubble");
    bubble.replaceChildren(renderBotText(text));
    wrapper.classList.remove("sb-msg--typing");
  }

  function showSources(wrapper, sources) {
    var old = wrapper.querySelector(".sb-sources");
    if (old) old.remove();
    var element = sourcesElement(sources);
    if (element) wrapper.querySelector(".sb-bubble").after(element);
  }

  function bubbleText(wrapper) {
    return wrapper.querySelector(".sb-bubble").textContent;
  }

  // A message from the transcript goes in id order, before anything still being sent.
  function placeMessage(element) {
    var id = Number(element.getAttribute("data-id"));
    var children = ui.log.children;
    for (var i = 0; i < children.length; i += 1) {
      var child = children[i];
      if (child.classList.contains("sb-greeting")) continue;
      var other = child.getAttribute("data-id");
      if (other === null || Number(other) > id) {
        ui.log.insertBefore(element, child);
        return;
      }
    }
    ui.log.append(element);
  }

  function addFeedback(wrapper, messageId) {
    var conversation = state.conversation;
    var current = conversation && conversation.ratings ? conversation.ratings[messageId] : null;
    var thanks = h("span", { class: "sb-feedback-thanks" });
    var buttons = {};
    ["up", "down"].forEach(function (rating) {
      var label = rating === "up" ? t.helpful : t.notHelpful;
      buttons[rating] = h("button", {
        type: "button", "aria-label": label, title: label, "aria-pressed": String(current === rating),
        onclick: function () { rate(rating); },
      }, icon(rating === "up" ? "thumbsUp" : "thumbsDown"));
    });
    async function rate(rating) {
      var owner = state.conversation;
      if (!owner) return;
      buttons.up.disabled = buttons.down.disabled = true;
      try {
        var response = await call("POST", conversationPath(owner, "/messages/" + messageId + "/feedback"), {
          token: owner.token, body: { rating: rating },
        });
        var result = await response.json();
        buttons.up.setAttribute("aria-pressed", String(rating === "up"));
        buttons.down.setAttribute("aria-pressed", String(rating === "down"));
        thanks.textContent = t.thanksFeedback;
        owner.ratings = Object.assign({}, owner.ratings);
        owner.ratings[messageId] = rating;
        saveConversation();
        if (result.escalated) setStatus("escalated");
      } catch (error) {
        showError(error, function () { rate(rating); });
      } finally {
        buttons.up.disabled = buttons.down.disabled = false;
      }
    }
    wrapper.append(h("div", { class: "sb-feedback", role: "group", "aria-label": t.rateReply },
      [buttons.up, buttons.down, thanks]));
  }

  function announce(text) {
    ui.announcer.textContent = "";
    // A change after an empty pause is announced even when the text is the same as the last one.
    setTimeout(function () { ui.announcer.textContent = text; }, 60);
  }

  function scrollToEnd() {
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function setStatus(status) {
    state.status = status;
    ui.root.classList.toggle("sb-escalated", status === "escalated");
    ui.subtitle.textContent = status === "escalated" ? t.escalatedSubtitle : config.subtitle || t.subtitle;
    ui.human.hidden = status === "escalated";
    ui.handoff.hidden = status !== "escalated";
    var contact = state.conversation && state.conversation.contact;
    ui.contactForm.hidden = Boolean(contact);
    ui.contactDone.hidden = !contact;
    if (contact) ui.contactDone.textContent = format(t.emailSaved, { email: contact });
    if (status === "resolved") askRating(false);
    schedulePoll();
    heartbeat();
  }

  function updateComposer() {
    ui.send.disabled = state.busy || !ui.input.value.trim();
    ui.newButton.disabled = state.busy;
  }

  function autosize() {
    ui.input.style.height = "auto"; // CSSOM, not a style attribute: fine under a strict CSP
    ui.input.style.height = Math.min(Math.max(ui.input.scrollHeight, 40), 120) + "px";
  }

  function onInputChange() {
    autosize();
    updateComposer();
    noteTyping();
  }

  // ---------------------------------------------------------------- typing and presence, for the agents

  var TYPING_IDLE_MS = 4000; // no keystroke for this long: the visitor stopped typing
  var TYPING_REPEAT_MS = 3000; // while typing, the signal is repeated this often (the agent's page lets it lapse)
  var HEARTBEAT_MS = 15000; // the service counts a visitor as on the page for 45 s after a heartbeat
  var signals = { typing: false, typingAt: 0, typingTimer: 0, present: false, beatAt: 0, beatTimer: 0 };

  // Best effort: a lost signal only delays what an agent sees, so it never shows the visitor an error.
  function signal(suffix, body, keepalive) {
    var conversation = state.conversation;
    if (!conversation) return;
    fetch(config.apiBase + conversationPath(conversation, suffix), {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + conversation.token },
      body: JSON.stringify(body),
      credentials: "omit",
      mode: "cors",
      keepalive: Boolean(keepalive),
    }).catch(function () {});
  }

  function noteTyping() {
    if (!state.conversation) return; // nobody watches a conversation that does not exist yet
    clearTimeout(signals.typingTimer);
    if (!ui.input.value.trim()) {
      stopTyping();
      return;
    }
    var now = Date.now();
    if (!signals.typing || now - signals.typingAt > TYPING_REPEAT_MS) {
      signals.typing = true;
      signals.typingAt = now;
      signal("/typing", { typing: true });
    }
    signals.typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping(sent) {
    clearTimeout(signals.typingTimer);
    if (!signals.typing) return;
    signals.typing = false;
    if (sent !== true) signal("/typing", { typing: false }); // a sent message ends typing by itself
  }

  // While the chat is open (or a person has the conversation) and the page is visible: a heartbeat every
  // HEARTBEAT_MS; when that ends, one "left" signal.
  function heartbeat() {
    var due = Boolean(state.conversation) && !document.hidden && (state.open || state.status === "escalated");
    if (!due) {
      clearTimeout(signals.beatTimer);
      if (signals.present) {
        signals.present = false;
        signal("/presence", { online: false }, true);
      }
      return;
    }
    if (signals.present && Date.now() - signals.beatAt < HEARTBEAT_MS - 500) return; // the timer has it
    signals.present = true;
    signals.beatAt = Date.now();
    signal("/presence", { online: true });
    clearTimeout(signals.beatTimer);
    signals.beatTimer = setTimeout(heartbeat, HEARTBEAT_MS);
  }

  function leave() {
    clearTimeout(signals.beatTimer);
    if (!signals.present) return;
    signals.present = false;
    signal("/presence", { online: false }, true); // keepalive: the request outlives the page
  }

  function onInputKey(event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault(); // Enter sends; Shift+Enter (and Enter while an IME composes) is a newline
    send();
  }

  // Speak `language` (the conversation's, as the service reads it) when there are built-in strings for it.
  function adoptLanguage(spoken) {
    var code = String(spoken || "").slice(0, 2).toLowerCase();
    if (localePinned || !STRINGS[code] || code === language) return;
    if (state.conversation) state.conversation.language = code; // kept: a reload speaks it too
    language = code;
    t = stringsFor(code);
    ui.root.setAttribute("lang", code);
    [[ui.newButton, t.newConversation], [ui.closeButton, t.close], [ui.send, t.send]].forEach(function (pair) {
      pair[0].setAttribute("aria-label", pair[1]);
      pair[0].setAttribute("title", pair[1]);
    });
    ui.log.setAttribute("aria-label", t.conversationLabel);
    ui.input.setAttribute("placeholder", t.placeholder);
    ui.input.setAttribute("aria-label", t.inputLabel);
    ui.hint.textContent = t.inputHint;
    ui.humanLabel.textContent = t.talkToHuman;
    ui.handoffTitle.textContent = t.handoffWaiting;
    ui.contactLabel.textContent = t.emailPrompt;
    ui.contactSubmit.textContent = t.emailSubmit;
    ui.powered.textContent = t.poweredBy;
    setStatus(state.status);
    updateBadge();
  }

  function updateBadge() {
    ui.badge.textContent = String(state.unread);
    ui.badge.hidden = state.unread === 0;
    var label = state.open ? t.launcherClose : t.launcherOpen;
    if (state.unread && !state.open) label += " (" + format(t.unread, { count: state.unread }) + ")";
    ui.launcher.setAttribute("aria-label", label);
  }

  // ---------------------------------------------------------------- errors

  function describe(error) {
    if (!(error instanceof ApiError)) return { text: t.errorServer, retry: true };
    if (error.kind === "network") return { text: t.errorNetwork, retry: true };
    if (error.status === 429) return { text: t.errorRateLimited, retry: true, wait: error.retryAfter || 5 };
    if (error.status === 413) return { text: t.errorTooLong, retry: false };
    if (error.code === "conversation_too_long") return { text: t.errorConversationFull, fresh: true };
    if (error.code === "invalid_user_hash") return { text: t.errorIdentity, retry: false };
    return { text: t.errorServer, retry: true, wait: error.status === 503 ? error.retryAfter : 0 };
  }

  function showError(error, retry) {
    var info = describe(error);
    clearError();
    ui.errorText.textContent = info.text;
    ui.retryButton.hidden = !info.retry && !info.fresh;
    ui.retryButton.disabled = false;
    ui.retryButton.textContent = info.fresh ? t.newConversation : t.retry;
    state.retry = info.fresh ? function () { newConversation(); } : retry;
    ui.error.hidden = false;
    if (info.wait) {
      var left = info.wait;
      var tick = function () {
        if (left <= 0) {
          clearInterval(state.retryTimer);
          ui.retryButton.disabled = false;
          ui.retryButton.textContent = t.retry;
          return;
        }
        ui.retryButton.disabled = true;
        ui.retryButton.textContent = format(t.retryIn, { seconds: left });
        left -= 1;
      };
      tick();
      state.retryTimer = setInterval(tick, 1000);
    }
  }

  function clearError() {
    clearInterval(state.retryTimer);
    ui.error.hidden = true;
    state.retry = null;
  }

  function retryAfterError() {
    var retry = state.retry;
    clearError();
    ui.input.focus(); // the alert (and this button) disappear: keep the keyboard in the widget
    if (retry) retry();
  }

  // ---------------------------------------------------------------- conversations

  // The service refuses metadata over SUPPORTBOT_MAX_METADATA_BYTES (4096 bytes of JSON by default): the
  // widget keeps well under it, cutting long values and leaving out keys that no longer fit, so a page with
  // a long URL or a big context still gets its conversation.
  var METADATA_BUDGET = 3800;

  function jsonBytes(value) {
    return new TextEncoder().encode(JSON.stringify(value)).length;
  }

  function pageMetadata() {
    var metadata = {};
    function put(key, value, limit) {
      if (value === undefined || value === null || value === "") return;
      if (!(key in metadata) && Object.keys(metadata).length >= 20) return; // the service accepts 20 keys
      var name = String(key).slice(0, 100);
      var previous = metadata[name];
      metadata[name] = String(value).slice(0, limit || 500);
      if (jsonBytes(metadata) > METADATA_BUDGET) {
        if (previous === undefined) delete metadata[name];
        else metadata[name] = previous;
      }
    }
    put("url", location.href, 1000);
    put("title", document.title, 300);
    put("locale", locale);
    if (identity.userId) {
      put("user_id", identity.userId);
      put("user_hash", identity.userHash);
    }
    Object.keys(context).forEach(function (key) { put(key, context[key]); });
    return metadata;
  }

  async function ensureConversation() {
    if (state.conversation) return state.conversation;
    var response = await call("POST", "/api/conversations", { body: { metadata: pageMetadata() } });
    var created = await response.json();
    state.conversation = {
      id: created.conversation_id, token: created.token, userId: identity.userId, contact: "", ratings: {},
    };
    saveConversation();
    setStatus("open");
    return state.conversation;
  }

  function saveConversation() {
    if (!state.conversation) return;
    state.conversation.touched = Date.now(); // other tabs see the change and reload the transcript
    writeStored(state.conversation);
  }

  // Clears what is on screen; with keepPending, a message being sent stays.
  function clearView(keepPending) {
    known.clear();
    state.answered = false;
    hideRating();
    Array.prototype.slice.call(ui.log.children).forEach(function (child) {
      if (child.classList.contains("sb-greeting")) return;
      if (keepPending && child.getAttribute("data-id") === null) return;
      child.remove();
    });
    ui.contactInput.value = "";
    ui.contactError.hidden = true;
  }

  function forgetConversation(keepPending) {
    state.conversation = null;
    writeStored(null);
    clearView(keepPending);
    setStatus("new");
  }

  function applyTranscript(transcript, quiet) {
    var fresh = [];
    transcript.messages.forEach(function (message) {
      if (message.role === "system") return;
      if (known.has(message.id)) {
        if (!message.confirmation) dropConfirmation(message.id);
        return;
      }
      var element = messageElement(message);
      placeMessage(element);
      if (message.role === "assistant") addConfirmation(element, message.confirmation);
      if (message.role === "assistant") addFeedback(element, message.id);
      if (message.role !== "user") {
        fresh.push(element);
        state.answered = true;
      }
    });
    setStatus(transcript.status);
    if (!fresh.length) return;
    scrollToEnd();
    if (quiet) return;
    var last = fresh[fresh.length - 1];
    var author = last.querySelector(".sb-author");
    announce((author ? author.textContent : config.title) + ": " + bubbleText(last));
    if (!state.open) {
      state.unread += fresh.length;
      updateBadge();
    }
    emit("message", { count: fresh.length });
  }

  async function refreshTranscript(quiet) {
    var conversation = state.conversation;
    if (!conversation || state.busy) return;
    var seq = state.sendSeq;
    try {
      var response = await call("GET", conversationPath(conversation), { token: conversation.token });
      var transcript = await response.json();
      // A send started meanwhile, or the conversation changed: this answer is out of date.
      if (state.conversation !== conversation || state.busy || state.sendSeq !== seq) return;
      applyTranscript(transcript, quiet);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 404) && state.conversation === conversation) {
        forgetConversation(false); // expired or unknown token: start afresh on the next message
      }
      // Anything else (offline for a moment) is retried by the next poll.
    }
  }

  function schedulePoll() {
    clearTimeout(state.pollTimer);
    if (!state.conversation || state.status !== "escalated") return;
    // While a person has the conversation, their replies arrive by polling the transcript.
    var delay = state.open && !document.hidden ? config.pollInterval : config.pollInterval * 5;
    state.pollTimer = setTimeout(function () {
      refreshTranscript(false).then(schedulePoll);
    }, delay);
  }

  // ---------------------------------------------------------------- sending

  async function send() {
    var text = ui.input.value;
    if (!text.trim() || state.busy) return;
    var draft = state.draft && state.draft.text === text ? state.draft : { text: text, clientId: newId() };
    state.draft = draft;
    clearError();
    state.busy = true;
    state.sendSeq += 1;
    stopTyping(true);
    ui.input.value = "";
    autosize();
    updateComposer();
    var mine = messageElement({ role: "user", content: text });
    mine.classList.add("sb-msg--pending");
    var reply = typingElement();
    ui.log.append(mine, reply);
    scrollToEnd();
    try {
      var turn = await deliver(text, draft.clientId, reply);
      settleTurn(turn, mine, reply);
      state.draft = null;
    } catch (error) {
      mine.remove();
      reply.remove();
      // The typed message is never lost: it goes back into the box, ahead of anything typed since.
      ui.input.value = ui.input.value ? text + "\n" + ui.input.value : text;
      autosize();
      showError(error, function () { send(); });
    } finally {
      cancelAnimationFrame(reply.frame);
      state.busy = false;
      updateComposer();
    }
  }

  // Shows a streamed reply's text as it grows, at most once a frame.
  function streamInto(reply) {
    return function (sofar) {
      reply.sofar = sofar;
      if (reply.frame) return;
      reply.frame = requestAnimationFrame(function () {
        reply.frame = 0;
        showBotText(reply, reply.sofar);
        scrollToEnd();
      });
    };
  }

  async function deliver(text, clientId, reply) {
    var onText = streamInto(reply);
    var conversation = await ensureConversation();
    try {
      return await streamTurn(conversation, text, clientId, onText);
    } catch (error) {
      if (!(error instanceof ApiError) || (error.status !== 401 && error.status !== 404)) throw error;
      // The kept conversation expired or is gone: continue in a new one.
      forgetConversation(true);
      return streamTurn(await ensureConversation(), text, clientId, onText);
    }
  }

  function settleTurn(turn, mine, reply) {
    cancelAnimationFrame(reply.frame);
    mine.classList.remove("sb-msg--pending");
    if (turn.message_id !== null && turn.message_id !== undefined) {
      mine.setAttribute("data-id", String(turn.message_id));
      known.add(turn.message_id);
    }
    showBotText(reply, turn.reply.content);
    showSources(reply, turn.reply.sources);
    reply.setAttribute("data-id", String(turn.reply.message_id));
    known.add(turn.reply.message_id);
    state.answered = true;
    adoptLanguage(turn.language); // first: the buttons below are labelled in the language the visitor writes
    // A new turn stored: an earlier question to confirm has expired (the service refuses a late decision).
    Array.prototype.slice.call(ui.log.querySelectorAll(".sb-confirm")).forEach(function (card) { card.remove(); });
    addConfirmation(reply, turn.confirmation);
    if (!turn.escalated && state.status !== "escalated") addFeedback(reply, turn.reply.message_id);
    scrollToEnd();
    announce(config.title + ": " + bubbleText(reply));
    if (turn.escalated) setStatus("escalated");
    else if (state.status !== "escalated") setStatus("open"); // writing after resolution reopens it
    saveConversation();
    emit("message", { count: 1 });
  }

  // ---------------------------------------------------------------- confirming an action

  // A reply that asks the visitor to confirm an action (cancel an order, resend an invoice) carries
  // `confirmation`: its summary is shown as text, never as HTML, with Confirm and Cancel. Nothing is called
  // before Confirm; one click decides (both buttons are disabled at once and go when the service answered).
  function addConfirmation(wrapper, confirmation) {
    if (!confirmation || typeof confirmation.action_call_id !== "number" || wrapper.querySelector(".sb-confirm")) return;
    var summaryId = "sb-confirm-" + confirmation.action_call_id;
    var card = h("div", { class: "sb-confirm", role: "group", "aria-labelledby": summaryId });
    var buttons = [["confirm", "sb-button", t.confirm], ["cancel", "sb-confirm-cancel", t.cancel]].map(function (item) {
      return h("button", {
        type: "button", class: item[1], "data-decision": item[0], text: item[2],
        onclick: function () { decide(confirmation, card, item[0]); },
      });
    });
    card.append(h("p", { id: summaryId, class: "sb-confirm-summary", text: String(confirmation.summary || "") }),
      h("div", { class: "sb-confirm-row" }, buttons));
    (wrapper.querySelector(".sb-sources") || wrapper.querySelector(".sb-bubble")).after(card);
  }

  function setDecisionButtons(card, disabled) {
    card.setAttribute("aria-busy", String(disabled));
    Array.prototype.forEach.call(card.querySelectorAll("button"), function (button) { button.disabled = disabled; });
  }

  // POST the decision; the turn it starts (the action called, or the model told it was cancelled) is shown
  // like any reply, streamed when possible. A 409 (decided in another tab, or expired by a later message)
  // or 404 leaves the summary with a short note in place of the buttons.
  async function decide(confirmation, card, decision) {
    var conversation = state.conversation;
    if (!conversation || state.busy || card.getAttribute("aria-busy") === "true") return;
    setDecisionButtons(card, true);
    clearError();
    state.busy = true;
    state.sendSeq += 1;
    updateComposer();
    var mine = messageElement({ role: "user", content: decision === "confirm" ? t.confirm : t.cancel });
    mine.classList.add("sb-msg--pending");
    var reply = typingElement();
    ui.log.append(mine, reply);
    scrollToEnd();
    var closed = false;
    try {
      var suffix = "/actions/" + encodeURIComponent(String(confirmation.action_call_id));
      var turn = await postTurn(conversation, suffix, { decision: decision }, streamInto(reply));
      card.remove();
      settleTurn(turn, mine, reply);
      ui.input.focus(); // the buttons are gone: the keyboard goes on in the message box
    } catch (error) {
      mine.remove();
      reply.remove();
      closed = error instanceof ApiError && (error.status === 409 || error.status === 404);
      if (closed) {
        card.querySelector(".sb-confirm-row").replaceWith(
          h("p", { class: "sb-confirm-closed", role: "status", text: t.confirmClosed }));
        card.removeAttribute("aria-busy");
      } else {
        setDecisionButtons(card, false);
        showError(error, function () { decide(confirmation, card, decision); });
      }
    } finally {
      cancelAnimationFrame(reply.frame);
      state.busy = false;
      updateComposer();
    }
    if (closed) {
      ui.input.focus();
      refreshTranscript(false); // what was decided elsewhere (another tab) shows up
    }
  }

  // The transcript no longer asks about this reply (decided in another tab): its buttons go.
  function dropConfirmation(messageId) {
    var wrapper = ui.log.querySelector('.sb-msg[data-id="' + Number(messageId) + '"]');
    var card = wrapper && wrapper.querySelector(".sb-confirm");
    if (card && card.querySelector("button")) card.remove();
  }

  // ---------------------------------------------------------------- handoff

  async function requestHandoff(contact) {
    if (state.handoffBusy) return false;
    state.handoffBusy = true;
    ui.human.disabled = true;
    clearError();
    try {
      var conversation = await ensureConversation();
      var response = await call("POST", conversationPath(conversation, "/handoff"), {
        token: conversation.token, body: contact ? { contact: contact } : {},
      });
      var result = await response.json();
      if (!known.has(result.reply.message_id)) {
        placeMessage(messageElement({ id: result.reply.message_id, role: "assistant", content: result.reply.content }));
      }
      if (contact) conversation.contact = contact;
      adoptLanguage(result.language);
      saveConversation();
      setStatus("escalated");
      scrollToEnd();
      announce(config.title + ": " + result.reply.content);
      (contact ? ui.input : ui.contactInput).focus(); // the button is gone; the e-mail field comes next
      emit("escalated", { reason: result.escalation && result.escalation.reason });
      return true;
    } catch (error) {
      showError(error, function () { requestHandoff(contact); });
      return false;
    } finally {
      state.handoffBusy = false;
      ui.human.disabled = false;
    }
  }

  async function submitContact(event) {
    event.preventDefault();
    var value = ui.contactInput.value.trim();
    if (!EMAIL.test(value) || value.length > 320) {
      ui.contactError.textContent = t.emailInvalid;
      ui.contactError.hidden = false;
      ui.contactInput.setAttribute("aria-invalid", "true");
      ui.contactInput.focus();
      return;
    }
    ui.contactError.hidden = true;
    ui.contactInput.removeAttribute("aria-invalid");
    await requestHandoff(value);
  }

  // ---------------------------------------------------------------- CSAT: rate the conversation once

  // Asks for a 1-5 rating once per conversation (kept in localStorage with it); false when not asked now.
  function askRating(closing) {
    var conversation = state.conversation;
    if (!conversation || conversation.csat || !state.answered || state.busy) return false;
    conversation.csat = "asked"; // asked once, whatever the visitor does with it
    saveConversation();
    var score = 0;
    var stars = [];
    var comment = h("textarea", { id: "sb-csat-comment", maxlength: "1000", rows: "2" });
    var submit = h("button", { type: "submit", class: "sb-button", text: t.csatSubmit, disabled: true });
    for (var n = 1; n <= 5; n += 1) {
      stars.push(h("button", {
        type: "button", "aria-label": format(t.csatScore, { score: n }), "aria-pressed": "false",
        onclick: choose.bind(null, n),
      }, icon("star")));
    }
    function choose(value) {
      score = value;
      stars.forEach(function (star, i) {
        star.classList.toggle("sb-lit", i < value);
        star.setAttribute("aria-pressed", String(i + 1 === value));
      });
      submit.disabled = false;
    }
    async function submitRating(event) {
      event.preventDefault();
      if (!score || submit.disabled) return;
      submit.disabled = true;
      clearError();
      try {
        await call("POST", conversationPath(conversation, "/rating"), {
          token: conversation.token, body: { score: score, comment: comment.value.trim() || null },
        });
        thank(conversation);
      } catch (error) {
        if (error instanceof ApiError && error.code === "already_rated") thank(conversation); // another tab rated
        else {
          submit.disabled = false;
          showError(error, function () { submitRating(event); });
        }
      }
    }
    ui.csatTitle.textContent = t.csatPrompt;
    ui.csatBody.replaceChildren(h("form", { onsubmit: submitRating }, [
      h("div", { class: "sb-stars", role: "group", "aria-labelledby": "sb-csat-title" }, stars),
      h("label", { for: "sb-csat-comment", text: t.csatComment }),
      comment,
      h("div", { class: "sb-csat-row" }, [submit, h("button", {
        type: "button", class: "sb-csat-skip", text: t.csatSkip, onclick: skipRating,
      })]),
    ]));
    placeRating();
    ui.csat.hidden = false;
    csatSay(t.csatPrompt);
    // Closing moves focus back to the launcher as always; asked in the open panel, the stars take it.
    if (state.open && !closing) stars[0].focus();
    return true;
  }

  function thank(conversation) {
    conversation.csat = "rated";
    if (state.conversation === conversation) saveConversation();
    ui.csatBody.replaceChildren(h("p", { class: "sb-csat-thanks", text: t.csatThanks }));
    csatSay(t.csatThanks);
    emit("rated", {});
  }

  function skipRating() {
    hideRating();
    if (state.open) ui.input.focus();
    else ui.launcher.focus();
  }

  function hideRating() {
    ui.csat.hidden = true;
    ui.csatBody.replaceChildren();
  }

  // The panel opened or closed: a pending question follows it; a thank-you has been seen and goes.
  function moveRating() {
    if (ui.csat.hidden) return;
    if (state.conversation && state.conversation.csat === "rated") hideRating();
    else placeRating();
  }

  function csatSay(text) {
    ui.csatLive.textContent = "";
    setTimeout(function () { ui.csatLive.textContent = text; }, 60);
  }

  // In the open panel, above the composer; with the panel closed, a card above the launcher.
  function placeRating() {
    if (state.open) ui.panel.insertBefore(ui.csat, ui.error);
    else ui.root.insertBefore(ui.csat, ui.probe);
    ui.csat.classList.toggle("sb-csat--float", !state.open);
  }

  // ---------------------------------------------------------------- open, close, new conversation

  function open(options) {
    if (!state.open) {
      state.open = true;
      ui.root.classList.add("sb-open");
      ui.launcher.setAttribute("aria-expanded", "true");
      state.unread = 0;
      updateBadge();
      sessionFlag(true);
      if (state.conversation) refreshTranscript(true);
      schedulePoll();
      heartbeat();
      scrollToEnd();
      moveRating();
      emit("open", {});
    }
    if (!options || options.focus !== false) ui.input.focus();
  }

  // `ask`: the visitor closed the chat themselves (not the host page's API): the first time after an
  // answer, a rating is asked for beside the launcher.
  function close(ask) {
    if (!state.open) return;
    var focusInside = ui.panel.contains(ui.shadow.activeElement);
    state.open = false;
    ui.root.classList.remove("sb-open");
    ui.launcher.setAttribute("aria-expanded", "false");
    updateBadge();
    sessionFlag(false);
    schedulePoll();
    heartbeat();
    if (focusInside) ui.launcher.focus();
    if (!(ask && askRating(true))) moveRating();
    emit("close", {});
  }

  function toggle() {
    if (state.open) close(true);
    else open();
  }

  function newConversation() {
    if (state.busy) return;
    forgetConversation(false);
    clearError();
    announce(t.newConversationStarted);
    ui.input.focus();
  }

  function identify(user) {
    user = user || {};
    identity = { userId: user.userId ? String(user.userId) : "", userHash: user.userHash ? String(user.userHash) : "" };
    // Never show one signed-in user's conversation to another on a shared device.
    if (state.conversation && state.conversation.userId && state.conversation.userId !== identity.userId) {
      forgetConversation(false);
    }
  }

  function emit(name, detail) {
    (listeners[name] || []).slice().forEach(function (handler) {
      try {
        handler(detail);
      } catch (error) {
        console.error("SupportBot " + name + " handler failed", error);
      }
    });
  }

  function onStorage(event) {
    if (event.key !== STORE_KEY && event.key !== null) return;
    if (state.busy) return;
    var stored = readStored();
    if (!stored) {
      if (state.conversation) {
        state.conversation = null;
        clearView(false);
        setStatus("new");
      }
      return;
    }
    if (!state.conversation || stored.id !== state.conversation.id) {
      clearView(false);
      state.conversation = stored;
      setStatus("open");
      refreshTranscript(true);
      return;
    }
    state.conversation.contact = stored.contact;
    state.conversation.ratings = stored.ratings;
    state.conversation.csat = stored.csat;
    refreshTranscript(false); // another tab wrote in this conversation
  }

  var api = {
    version: VERSION,
    open: function () { open(); },
    close: function () { close(); },
    toggle: function () { toggle(); },
    isOpen: function () { return state.open; },
    identify: identify,
    setContext: function (values) { Object.assign(context, cleanContext(values)); },
    newConversation: function () { newConversation(); },
    reset: function () { if (!state.busy) forgetConversation(false); },
    hide: function () { close(); ui.root.hidden = true; },
    show: function () { ui.root.hidden = false; },
    getConversationId: function () { return state.conversation ? state.conversation.id : null; },
    on: function (name, handler) { (listeners[name] = listeners[name] || []).push(handler); },
    off: function (name, handler) {
      listeners[name] = (listeners[name] || []).filter(function (h2) { return h2 !== handler; });
    },
  };

  function start() {
    build();
    var stored = readStored();
    if (stored && stored.userId && stored.userId !== identity.userId) {
      writeStored(null); // kept for another signed-in user: never shown to this one
      stored = null;
    }
    if (stored) {
      state.conversation = stored;
      adoptLanguage(stored.language);
      setStatus("open");
      refreshTranscript(true);
    } else {
      setStatus("new");
    }
    updateBadge();
    if (config.openOnLoad || sessionFlag()) open({ focus: false });
    window.addEventListener("storage", onStorage);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && state.open) refreshTranscript(false);
      schedulePoll();
      heartbeat();
    });
    window.addEventListener("pagehide", leave);
    // Any element of the host page with data-supportbot-open opens the chat: no script needed.
    document.addEventListener("click", function (event) {
      var target = event.target && event.target.closest ? event.target.closest("[data-supportbot-open]") : null;
      if (!target) return;
      event.preventDefault();
      open();
    });
    window.SupportBot = api;
    if (config.onReady) {
      try {
        config.onReady(api);
      } catch (error) {
        console.error("SupportBotConfig.onReady failed", error);
      }
    }
    window.dispatchEvent(new CustomEvent("supportbot:ready", { detail: api }));
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start, { once: true });
})(typeof DOMPurify !== "undefined" ? DOMPurify : null);
