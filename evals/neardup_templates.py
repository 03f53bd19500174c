"""Word lists and message templates of the near-duplicate benchmark (evals/neardup_benchmark.py): data, not logic."""
from typing import Any

# Faker's pt_BR lorem provider falls back to Latin, so Portuguese text needs its own word list.
PT_WORDS = """casa tempo ano dia vez homem coisa mulher vida mundo parte olho trabalho lugar mão país governo cidade
forma caso nome momento ponto família grupo problema pessoa estado história empresa escola rua água noite porta livro
palavra amigo criança verdade carro terra pai mãe filho cabeça dinheiro hora semana mês questão sistema serviço projeto
lado fim início razão exemplo ideia viagem praia campo mesa janela jornal cliente pedido produto preço loja fazer ser
ter estar ir dizer poder ver dar saber querer ficar chegar passar dever achar falar levar começar conhecer viver sentir
pensar deixar entrar sair trazer voltar pedir comprar vender abrir fechar escrever ler ouvir pagar esperar encontrar
perder ganhar grande novo bom pequeno próprio velho certo último mesmo longo alto primeiro público importante possível
melhor pior difícil fácil claro bonito rápido cedo tarde sempre nunca ainda já muito pouco mais menos bem mal aqui ali
hoje ontem amanhã agora depois antes também só então talvez quase logo de em para por com sem sobre entre até desde
contra e ou mas porque se quando como onde que quem não sim o a os as um uma uns umas este esta esse essa aquele meu
minha seu sua nosso nossa todo toda outro outra cada algum nenhum dois três quatro cinco dez cem mil""".split()

# Customer-support messages: a greeting, 3-6 body sentences (chosen and ordered at random) and a closing.
# Two messages share the fixed words of the sentences they both use; fills and sentence choice differ.
SUPPORT: dict[str, dict[str, Any]] = {
    "en_US": {
        "greet": ["Hello, my name is {name} and I am writing about my order {order}.", "Hi, this is {name} from {city}.",
                  "Dear support team, my name is {name}.", "Good morning, I am writing on behalf of {company} in {city}."],
        "body": [
            "I ordered the {product} on {date} and it still has not arrived.",
            "The tracking page for order {order} has not changed since {date}.",
            "The {product} I received on {date} was damaged in transit.",
            "I was charged {amount} twice for the same order.",
            "Could you please send a replacement {product} to {street}, {city}?",
            "I would like a full refund of {amount} to my original payment method.",
            "Your colleague {name2} promised me a call back within {days} days, but nobody called.",
            "The courier left the parcel at {street} instead of my address.",
            "I have been a loyal customer since {year} and this has never happened before.",
            "Please cancel my subscription for the {product} from {date}.",
            "The invoice lists the {product} but I ordered the {product2}.",
            "I work as {job} at {company} and I need this sorted out before {date}.",
            "Can you confirm whether the {product2} is still in stock in {city}?",
            "You can reach me at {phone} on weekdays after {days} pm.",
        ],
        "close": ["Thank you, {name}.", "Best regards, {name}", "Kind regards, {name} ({phone})",
                  "Thanks in advance, {name} from {company}"],
        "nouns": ["coffee grinder", "rain jacket", "desk lamp", "office chair", "blender", "backpack", "phone case",
                  "toaster", "hiking boots", "headphones", "yoga mat", "kettle"],
        "date": "{month} {day}, {year}", "amount": "{n} dollars",
    },
    "de_DE": {
        "greet": ["Hallo, mein Name ist {name} und ich schreibe wegen meiner Bestellung {order}.",
                  "Guten Tag, hier ist {name} aus {city}.", "Sehr geehrtes Kundenservice Team, mein Name ist {name}.",
                  "Guten Morgen, ich schreibe im Auftrag von {company} in {city}."],
        "body": [
            "Ich habe am {date} das Produkt {product} bestellt und es ist immer noch nicht angekommen.",
            "Die Sendungsverfolgung für Bestellung {order} hat sich seit dem {date} nicht verändert.",
            "Das Produkt {product}, das ich am {date} erhalten habe, wurde beim Transport beschädigt.",
            "Mir wurden {amount} für dieselbe Bestellung zweimal berechnet.",
            "Könnten Sie bitte einen Ersatz für {product} an {street}, {city} schicken?",
            "Ich möchte eine vollständige Erstattung von {amount} auf meine ursprüngliche Zahlungsart.",
            "Ihr Kollege {name2} hat mir einen Rückruf innerhalb von {days} Tagen versprochen, aber niemand hat angerufen.",
            "Der Paketdienst hat das Paket in der {street} statt an meiner Adresse abgegeben.",
            "Ich bin seit {year} treuer Kunde und so etwas ist noch nie passiert.",
            "Bitte kündigen Sie mein Abonnement für das Produkt {product} zum {date}.",
            "Auf der Rechnung steht {product}, aber ich habe {product2} bestellt.",
            "Ich arbeite als {job} bei {company} und brauche eine Lösung vor dem {date}.",
            "Können Sie bestätigen, ob das Produkt {product2} in {city} noch vorrätig ist?",
            "Sie erreichen mich werktags nach {days} Uhr unter {phone}.",
        ],
        "close": ["Vielen Dank, {name}.", "Mit freundlichen Grüßen, {name}", "Viele Grüße, {name} ({phone})",
                  "Danke im Voraus, {name} von {company}"],
        "nouns": ["Kaffeemühle", "Regenjacke", "Schreibtischlampe", "Bürostuhl", "Mixer", "Rucksack", "Handyhülle",
                  "Toaster", "Wanderschuhe", "Kopfhörer", "Yogamatte", "Wasserkocher"],
        "date": "{day}. {month} {year}", "amount": "{n} Euro",
    },
    "fr_FR": {
        "greet": ["Bonjour, je m'appelle {name} et je vous écris au sujet de ma commande {order}.",
                  "Bonjour, ici {name}, de {city}.", "Madame, Monsieur, je suis {name}, client chez vous.",
                  "Bonjour, je vous contacte au nom de la société {company} à {city}."],
        "body": [
            "J'ai commandé le produit {product} le {date} et il n'est toujours pas arrivé.",
            "Le suivi de la commande {order} n'a pas bougé depuis le {date}.",
            "Le produit {product} reçu le {date} a été endommagé pendant le transport.",
            "On m'a débité {amount} deux fois pour la même commande.",
            "Pourriez-vous envoyer un produit {product} de remplacement au {street}, {city} ?",
            "Je souhaite un remboursement complet de {amount} sur mon moyen de paiement initial.",
            "Votre collègue {name2} m'a promis un rappel sous {days} jours, mais personne ne m'a appelé.",
            "Le livreur a déposé le colis {street} au lieu de mon adresse.",
            "Je suis client fidèle depuis {year} et cela ne m'est jamais arrivé.",
            "Merci de résilier mon abonnement au produit {product} à partir du {date}.",
            "La facture mentionne {product} alors que j'ai commandé {product2}.",
            "Je travaille comme {job} chez {company} et j'ai besoin d'une solution avant le {date}.",
            "Pouvez-vous confirmer si le produit {product2} est encore disponible à {city} ?",
            "Vous pouvez me joindre au {phone} en semaine après {days} heures.",
        ],
        "close": ["Merci, {name}.", "Cordialement, {name}", "Bien à vous, {name} ({phone})",
                  "Merci d'avance, {name}, {company}"],
        "nouns": ["moulin à café", "veste de pluie", "lampe de bureau", "chaise de bureau", "mixeur", "sac à dos",
                  "coque de téléphone", "grille-pain", "chaussures de randonnée", "casque audio", "tapis de yoga",
                  "bouilloire"],
        "date": "{day} {month} {year}", "amount": "{n} euros",
    },
    "es_ES": {
        "greet": ["Hola, me llamo {name} y les escribo por mi pedido {order}.", "Buenos días, soy {name}, de {city}.",
                  "Estimado equipo de atención al cliente, mi nombre es {name}.",
                  "Buenas tardes, les escribo en nombre de {company} en {city}."],
        "body": [
            "Pedí el producto {product} el {date} y todavía no ha llegado.",
            "El seguimiento del pedido {order} no ha cambiado desde el {date}.",
            "El producto {product} que recibí el {date} llegó dañado.",
            "Me cobraron {amount} dos veces por el mismo pedido.",
            "¿Podrían enviar un producto {product} de reemplazo a {street}, {city}?",
            "Quisiera un reembolso completo de {amount} a mi método de pago original.",
            "Su compañero {name2} me prometió una llamada en {days} días, pero nadie me llamó.",
            "El repartidor dejó el paquete en {street} en lugar de en mi dirección.",
            "Soy cliente fiel desde {year} y esto nunca me había pasado.",
            "Por favor, cancelen mi suscripción al producto {product} a partir del {date}.",
            "La factura indica {product}, pero yo pedí {product2}.",
            "Trabajo como {job} en {company} y necesito una solución antes del {date}.",
            "¿Pueden confirmar si el producto {product2} sigue disponible en {city}?",
            "Pueden llamarme al {phone} entre semana después de las {days}.",
        ],
        "close": ["Gracias, {name}.", "Saludos cordiales, {name}", "Atentamente, {name} ({phone})",
                  "Gracias de antemano, {name}, {company}"],
        "nouns": ["molinillo de café", "chaqueta impermeable", "lámpara de escritorio", "silla de oficina", "batidora",
                  "mochila", "funda de móvil", "tostadora", "botas de montaña", "auriculares", "esterilla de yoga",
                  "hervidor"],
        "date": "{day} de {month} de {year}", "amount": "{n} euros",
    },
}  # fmt: skip
